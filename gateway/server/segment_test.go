package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/wire/results"
	workerchunk "github.com/serviceradar/sync-operator/workers/chunk"
)

// throttledTotal is the sum of sync_gateway_throttled_total over its limits.
func throttledTotal(m *server.Metrics) float64 {
	var n float64
	for _, l := range []string{server.LimitStreams, server.LimitCallerStreams, server.LimitIngestMemory, server.LimitCallerIngestMemory, server.LimitCallIngestMemory} {
		n += testutil.ToFloat64(m.Throttled.WithLabelValues(l))
	}
	return n
}

// checkSegmentBounds runs inside TestConfigPlane, on its world (issue 14,
// defects 2 and 7, review findings): a call that can never fit the ingest
// budget is refused for good, the worker's largest segment fits a gateway
// with default limits, the read deadline does not cover the database
// transaction, and a call ended by its read deadline leaves nothing behind
// that reads its stream.
func checkSegmentBounds(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	armisUID := sourceUID(t, w, "acme", "acme-armis")
	const worker = "platform-sync-acme"
	platformWorker := svid(t, w, "sync/acme/default/"+worker)
	yes := true

	t.Run("a call that alone needs more than one caller may hold is refused for good, without a retry delay", func(t *testing.T) {
		m := server.NewMetrics()
		_, addr := w.serve("gw-too-big", m, func(o *server.Options) {
			o.Admission = server.Admission{IngestBytes: 64 << 20, IngestBytesPerCaller: 3 << 20, MaxMessageBytes: 1 << 20, RetryAfter: 20 * time.Millisecond}
		})
		// Three devices of 900 KiB in one segment: with the 1 MiB
		// reservation, more than the 3 MiB one caller may hold, whatever
		// else is in flight. Before the fix it was answered with a retry
		// delay, and the worker sent it again until it ran out of attempts.
		s := &workerchunk.Sender{Client: w.clientOf(t, addr, platformWorker), AgentID: worker, SegmentDevices: 3, Attempts: 20,
			MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Meta: results.Meta{IntegrationSourceUID: armisUID, SyncRunID: uuid.NewString()}}
		for i := range 3 {
			if err := s.Add(ctx, results.DeviceUpdate{IP: fmt.Sprintf("10.79.0.%d", i), Hostname: strings.Repeat("b", 900<<10), IsAvailable: &yes,
				Metadata: map[string]string{"armis_device_id": fmt.Sprint(7900 + i), "integration_source_uid": armisUID}}); err != nil {
				t.Fatal(err)
			}
		}
		err := s.Finish(ctx, true, "")
		if status.Code(err) != codes.ResourceExhausted || retryDelay(err) != -1 || !strings.Contains(err.Error(), "(attempt 1)") ||
			!strings.Contains(err.Error(), "ingest-memory-bytes-per-caller") {
			t.Fatalf("a segment over one caller's share: %v (retry %s), want ResourceExhausted on the first attempt, without a retry delay, naming the limit", err, retryDelay(err))
		}
		if got := testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitCallIngestMemory)); got != 1 {
			t.Fatalf("%v calls refused over one call's limit, want 1", got)
		}
		test.Eventually(t, "every charge to be given back", 30*time.Second, func() bool { return testutil.ToFloat64(m.IngestHeldBytes) == 0 })
	})

	t.Run("the largest segments a worker sends are admitted by a gateway with default limits", func(t *testing.T) {
		m := server.NewMetrics()
		_, addr := w.serve("gw-default-limits", m) // server.DefaultAdmission, ingest.DefaultLimits
		// The densest devices the gateway takes (as many metadata entries as
		// an object may have, each as short as it can be) cost the most
		// ingest memory per byte: before the fix, a worker's segment of
		// them (closed at 50,000 devices or 48 MiB) was charged far more
		// than one caller may hold, and refused on every run.
		const devices = 20000
		s := &workerchunk.Sender{Client: w.clientOf(t, addr, platformWorker), AgentID: worker, Attempts: 3,
			SegmentDevices: workerchunk.MaxSegmentDevices, ChunkBytes: workerchunk.MaxChunkBytes,
			Meta: results.Meta{IntegrationSourceUID: armisUID, SyncRunID: uuid.NewString()}}
		for i := range devices {
			md := map[string]string{"armis_device_id": fmt.Sprint(100000 + i), "integration_source_uid": armisUID}
			for k := len(md); k < results.MaxObjectMembers; k++ {
				md[fmt.Sprintf("k%d", k)] = ""
			}
			if err := s.Add(ctx, results.DeviceUpdate{IP: fmt.Sprintf("10.%d.%d.%d", 100+i>>16, i>>8&255, i&255), IsAvailable: &yes, Metadata: md}); err != nil {
				t.Fatalf("device %d: %v", i, err)
			}
		}
		if err := s.Finish(ctx, true, ""); err != nil {
			t.Fatalf("the worker's run of its largest segments: %v", err)
		}
		if s.Sent() != devices {
			t.Fatalf("%d devices acknowledged, want %d", s.Sent(), devices)
		}
		if got := throttledTotal(m); got != 0 {
			t.Fatalf("%v calls throttled, want 0", got)
		}
	})

	t.Run("the read deadline does not cover the database transaction", func(t *testing.T) {
		clk := testingclock.NewFakeClock(time.Now())
		const readTimeout = 500 * time.Millisecond
		_, addr := w.serve("gw-slow-db", server.NewMetrics(), func(o *server.Options) {
			o.Clock = clk
			o.Admission = server.Admission{CallTimeout: readTimeout}
		})
		c := w.clientOf(t, addr, platformWorker)
		// A first segment makes sure the tenant's tables exist.
		first := &results.Meta{IntegrationSourceUID: armisUID, SyncRunID: uuid.NewString()}
		if err := stream(ctx, c, chunks(chunk(worker, 0, 1, true, message(t, armisUID, first, 180, 1, nil)))); err != nil {
			t.Fatal(err)
		}
		// The database is slow: the segment's table is locked until the
		// call has been read, and then well past the read deadline.
		conn, err := pgx.Connect(ctx, w.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close(context.Background()) }()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(context.Background()) }()
		if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{store.Schema("acme"), "applied_segments"}.Sanitize()+" IN EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		meta := &results.Meta{IntegrationSourceUID: armisUID, SyncRunID: uuid.NewString(), RunComplete: true, FullFetch: true}
		done := make(chan error, 1)
		go func() {
			done <- stream(ctx, c, chunks(chunk(worker, 0, 1, true, message(t, armisUID, meta, 180, 3, nil))))
		}()
		test.Eventually(t, "the gateway to wait for the locked table", time.Minute, func() bool {
			var waiting int
			err := w.store.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO applied_segments%'`).Scan(&waiting)
			return err == nil && waiting > 0
		})
		// The read deadline passes, on the gateway's clock and on the real one.
		clk.Step(2 * readTimeout)
		time.Sleep(2 * readTimeout)
		select {
		case err := <-done:
			t.Fatalf("the call ended while its segment was being applied: %v", err)
		default:
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("a segment applied after the read deadline: %v", err)
		}
	})

	t.Run("the read deadline ends a call, and nothing reads its stream after its handler returned", func(t *testing.T) {
		clk := testingclock.NewFakeClock(time.Now())
		logs := &syncBuffer{}
		m := server.NewMetrics()
		_, addr := w.serve("gw-read-deadline", m, func(o *server.Options) {
			o.Clock = clk
			// Calls of as many small chunks as the caller sends, for as
			// long as the deadline lets it.
			o.Limits = ingest.Limits{MaxChunks: 1 << 30, MaxServices: 16, MaxBytes: 1 << 30, MaxDevices: 1 << 30}
			o.Admission = server.Admission{CallTimeout: time.Minute, IngestBytes: 4 << 30, IngestBytesPerCaller: 4 << 30}
			o.Log = funcr.New(func(prefix, args string) { logs.write(prefix + " " + args) }, funcr.Options{Verbosity: 10})
		})
		c := w.clientOf(t, addr, platformWorker)
		meta := &results.Meta{IntegrationSourceUID: armisUID, SyncRunID: uuid.NewString()}
		msg := message(t, armisUID, meta, 1, 1, nil)
		const calls = 5
		for call := range calls {
			cctx, cancel := context.WithCancel(ctx)
			st, err := c.StreamStatus(cctx)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			// The caller sends chunks as fast as it can, before the deadline
			// and after it, until the gateway ends the call: chunks are
			// waiting in the gateway's buffers when the deadline passes.
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				for i := 0; st.Send(chunk(worker, i, 1<<30, false, msg)) == nil; i++ {
				}
			}()
			read := testutil.ToFloat64(m.StatusChunks)
			test.Eventually(t, "chunks to be read", 30*time.Second, func() bool { return testutil.ToFloat64(m.StatusChunks) > read+10 })
			clk.Step(time.Minute)
			<-sent
			_, err = st.CloseAndRecv()
			cancel()
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("call %d, ended by its read deadline: %v, want DeadlineExceeded", call, err)
			}
			// gRPC answers as the Recv fails, before the handler returns.
			test.Eventually(t, "the handler to return", 30*time.Second, func() bool {
				return testutil.ToFloat64(m.StatusStreams) == 0 && testutil.ToFloat64(m.IngestHeldBytes) == 0
			})
		}
		// Before the fix, the call's reader outlived its handler, still
		// inside Recv on the stream: it read chunks after the handler had
		// returned and refused them as over a budget the call no longer held.
		if got := throttledTotal(m); got != 0 {
			t.Fatalf("%v chunks refused as throttled, want 0", got)
		}
		text := logs.String()
		if n := strings.Count(text, `"refused"`); n != calls || strings.Count(text, "DeadlineExceeded") != calls || strings.Contains(text, "throttled") {
			t.Fatalf("want one DeadlineExceeded refusal per call and nothing else refused or throttled, got %d refusals:\n%.3000s", n, text)
		}
	})
}
