package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/identity/ca"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/wire/results"
	workerchunk "github.com/serviceradar/sync-operator/workers/chunk"
)

// sourceUID is the uid of one of the world's IntegrationSources.
func sourceUID(t *testing.T, w *world, slug, name string) string {
	t.Helper()
	src := &v1alpha1.IntegrationSource{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: w.ns[slug], Name: name}, src); err != nil {
		t.Fatal(err)
	}
	return string(src.UID)
}

// held is a StreamStatus call left open after its first chunks, holding
// what the gateway charged for them until it is let go.
type held struct {
	st     pb.AgentGatewayService_StreamStatusClient
	cancel context.CancelFunc
}

func hold(t *testing.T, c pb.AgentGatewayServiceClient, chunks ...*pb.GatewayStatusChunk) *held {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := c.StreamStatus(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for _, ch := range chunks {
		if err := st.Send(ch); err != nil {
			cancel()
			t.Fatalf("holding a call: %v", err)
		}
	}
	h := &held{st: st, cancel: cancel}
	t.Cleanup(h.release)
	return h
}

func (h *held) release() { h.cancel() }

// stream sends chunks (stopping when the gateway ended the call) and
// returns the call's answer.
func stream(ctx context.Context, c pb.AgentGatewayServiceClient, chunks func(yield func(*pb.GatewayStatusChunk) bool)) error {
	st, err := c.StreamStatus(ctx)
	if err != nil {
		return err
	}
	for ch := range chunks {
		if err := st.Send(ch); err != nil {
			break // the server ended the call; CloseAndRecv has its status
		}
	}
	_, err = st.CloseAndRecv()
	return err
}

func chunks(list ...*pb.GatewayStatusChunk) func(func(*pb.GatewayStatusChunk) bool) {
	return func(yield func(*pb.GatewayStatusChunk) bool) {
		for _, c := range list {
			if !yield(c) {
				return
			}
		}
	}
}

// retryDelay is the RetryInfo delay of a refusal, or -1.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return -1
}

// checkAdmission runs inside TestConfigPlane, on its world (issue 14,
// defect 2): StreamStatus authorizes the caller before it reads a chunk
// (and its agent_id on the first), counts every byte of every chunk, bounds
// metadata per device, and the replica's limits on streams and ingest
// memory, in total and per caller, answer ResourceExhausted with a retry
// delay, the ingest budget before a chunk is read.
func checkAdmission(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	armisUID := sourceUID(t, w, "acme", "acme-armis")
	globexUID := sourceUID(t, w, "globex", "globex-armis")
	const worker, globexWorker = "platform-sync-acme", "platform-sync-globex"
	platformWorker := svid(t, w, "sync/acme/default/"+worker)
	globexPlatformWorker := svid(t, w, "sync/globex/default/"+globexWorker)
	meta := func(uid string) *results.Meta {
		return &results.Meta{IntegrationSourceUID: uid, SyncRunID: uuid.NewString()}
	}

	t.Run("callers that are not enrolled are refused before a chunk is read", func(t *testing.T) {
		hooliCA, err := w.root.NewTenantCA("hooli", 0) // a tenant that does not exist
		if err != nil {
			t.Fatal(err)
		}
		hooli, err := hooliCA.IssueEdgeClient("edge", "hq", "hooli", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		m := server.NewMetrics()
		_, addr := w.serve("gw-first-chunk", m)
		// 1 MiB chunks, as many as a call may have: before the fix, the
		// gateway read (and held) all of them before it looked at the
		// caller, then it read the first (gRPC allocating all of it) to find
		// the agent_id that only a caller it serves gets compared.
		junk := make([]byte, 1<<20)
		for i := range junk {
			junk[i] = ' '
		}
		copy(junk, `{"sync_meta":{"sync_run_id":"r"},"devices":[]}`)
		for _, tc := range []struct {
			name    string
			cert    *ca.Issued
			agentID string
			code    codes.Code
			read    float64 // chunks the gateway reads before it refuses
		}{
			{"an edge certificate of a tenant that does not exist", hooli, "edge", codes.PermissionDenied, 0},
			{"a tenant that is not onboarded", svid(t, w, "sync/initech/default/platform-sync-initech"), "platform-sync-initech", codes.PermissionDenied, 0},
			{"an enrolled worker naming another component", platformWorker, "platform-sync-globex", codes.PermissionDenied, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := testutil.ToFloat64(m.StatusChunks)
				c := w.clientOf(t, addr, tc.cert)
				err := stream(ctx, c, func(yield func(*pb.GatewayStatusChunk) bool) {
					for i := range ingest.DefaultLimits.MaxChunks {
						if !yield(chunk(tc.agentID, i, ingest.DefaultLimits.MaxChunks, i == ingest.DefaultLimits.MaxChunks-1, junk)) {
							return
						}
					}
				})
				if status.Code(err) != tc.code {
					t.Fatalf("got %v, want %s", err, tc.code)
				}
				assertNoLeak(t, w, status.Convert(err).Message())
				if read := testutil.ToFloat64(m.StatusChunks) - before; read != tc.read {
					t.Fatalf("the gateway read %v chunks of a caller it refuses, want %v", read, tc.read)
				}
				if held := testutil.ToFloat64(m.IngestHeldBytes); held != 0 {
					t.Fatalf("a refused caller left %v bytes charged", held)
				}
			})
		}
	})

	t.Run("agents are acknowledged, and what they stream besides sweep results is dropped a chunk at a time", func(t *testing.T) {
		// An agent (an SVID of type agent) is answered, never refused: a
		// refusal makes an upstream agent reconnect and send it again
		// forever. Its chunks are read, dropped and given back one by one.
		// (An edge certificate in our own format that names no SyncService
		// is a deleted SyncService's and is refused: checkAgents.)
		m := server.NewMetrics()
		_, addr := w.serve("gw-agent-drop", m, func(o *server.Options) {
			o.Admission = server.Admission{IngestBytes: 64 << 20, IngestBytesPerCaller: 4 << 20, MaxMessageBytes: 2 << 20}
		})
		junk := make([]byte, 1<<20)
		for i := range junk {
			junk[i] = ' '
		}
		copy(junk, `{"sync_meta":{"sync_run_id":"r"},"devices":[]}`)
		for _, tc := range []struct {
			name    string
			cert    *ca.Issued
			agentID string
		}{
			{"an agent component", svid(t, w, "agent/acme/default/agent-1"), "agent-1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before, dropped := testutil.ToFloat64(m.StatusChunks), testutil.ToFloat64(m.AgentServicesDropped)
				// 32 MiB in 1 MiB chunks: eight times what the caller may hold at once.
				const n = 32
				err := stream(ctx, w.clientOf(t, addr, tc.cert), func(yield func(*pb.GatewayStatusChunk) bool) {
					for i := range n {
						if !yield(chunk(tc.agentID, i, n, i == n-1, junk)) {
							return
						}
					}
				})
				if err != nil {
					t.Fatalf("an agent's call: %v, want it acknowledged", err)
				}
				if read, gone := testutil.ToFloat64(m.StatusChunks)-before, testutil.ToFloat64(m.AgentServicesDropped)-dropped; read != n || gone != n {
					t.Fatalf("read %v chunks and dropped %v services, want %d of each", read, gone, n)
				}
				if held := testutil.ToFloat64(m.IngestHeldBytes); held != 0 {
					t.Fatalf("an agent's call left %v bytes charged", held)
				}
			})
		}
	})

	t.Run("every byte of every chunk counts against the call's limit", func(t *testing.T) {
		_, addr := w.serve("gw-bytes", server.NewMetrics(), func(o *server.Options) {
			o.Limits = ingest.Limits{MaxChunks: 128, MaxServices: 16, MaxBytes: 1 << 20, MaxDevices: 100000}
		})
		c := w.clientOf(t, addr, platformWorker)
		big := strings.Repeat("g", 300<<10) // four of them exceed the limit, the results alone do not
		for _, tc := range []struct {
			name string
			fill func(*pb.GatewayStatusChunk)
		}{
			{"gateway_id", func(c *pb.GatewayStatusChunk) { c.GatewayId = big }},
			{"source_ip and kv_store_id", func(c *pb.GatewayStatusChunk) { c.SourceIp, c.KvStoreId = big[:150<<10], big[:150<<10] }},
			{"partition", func(c *pb.GatewayStatusChunk) { c.Partition = big }},
			{"services' service_name", func(c *pb.GatewayStatusChunk) { c.Services[0].ServiceName = big }},
			{"a service that is not results", func(c *pb.GatewayStatusChunk) {
				c.Services = append(c.Services, &pb.GatewayServiceStatus{ServiceName: "ping", Source: "status", Message: []byte(big)})
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				msg := message(t, armisUID, meta(armisUID), 1, 1, nil)
				err := stream(ctx, c, func(yield func(*pb.GatewayStatusChunk) bool) {
					for i := range 4 {
						ch := chunk(worker, i, 4, i == 3, msg)
						tc.fill(ch)
						if !yield(ch) {
							return
						}
					}
				})
				if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "exceed") {
					t.Fatalf("got %v, want ResourceExhausted for the call's bytes", err)
				}
			})
		}
	})

	t.Run("metadata entries per device are bounded", func(t *testing.T) {
		c := w.client(t, platformWorker)
		for _, tc := range []struct {
			entries int
			code    codes.Code
		}{{results.MaxObjectMembers - 3, codes.OK}, {results.MaxObjectMembers + 1, codes.InvalidArgument}, {100000, codes.InvalidArgument}} {
			t.Run(fmt.Sprint(tc.entries), func(t *testing.T) {
				msg := message(t, armisUID, meta(armisUID), 9, 1, func(d *results.DeviceUpdate) {
					for k := len(d.Metadata); k < tc.entries; k++ {
						d.Metadata[fmt.Sprintf("k%d", k)] = "v"
					}
				})
				if err := stream(ctx, c, chunks(chunk(worker, 0, 1, true, msg))); status.Code(err) != tc.code {
					t.Fatalf("%d metadata entries: %v, want %s", tc.entries, err, tc.code)
				}
			})
		}
	})

	t.Run("streams are bounded per caller and in total", func(t *testing.T) {
		m := server.NewMetrics()
		_, addr := w.serve("gw-streams", m, func(o *server.Options) {
			o.Admission = server.Admission{StatusStreams: 3, StatusStreamsPerCaller: 2, RetryAfter: 50 * time.Millisecond}
		})
		worker1 := w.clientOf(t, addr, platformWorker)
		worker2 := w.clientOf(t, addr, globexPlatformWorker)
		first := func(uid, agent string) *pb.GatewayStatusChunk {
			return chunk(agent, 0, 2, false, message(t, uid, meta(uid), 1, 1, nil))
		}
		open := []*held{hold(t, worker1, first(armisUID, worker)), hold(t, worker1, first(armisUID, worker))}
		test.Eventually(t, "two calls in flight", 30*time.Second, func() bool { return testutil.ToFloat64(m.StatusStreams) == 2 })
		err := stream(ctx, worker1, chunks(first(armisUID, worker)))
		if status.Code(err) != codes.ResourceExhausted || retryDelay(err) != 50*time.Millisecond {
			t.Fatalf("a third call of one caller: %v (retry %s), want ResourceExhausted with a retry delay", err, retryDelay(err))
		}
		if got := testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitCallerStreams)); got != 1 {
			t.Fatalf("%v calls throttled per caller, want 1", got)
		}
		open = append(open, hold(t, worker2, first(globexUID, globexWorker)))
		test.Eventually(t, "three calls in flight", 30*time.Second, func() bool { return testutil.ToFloat64(m.StatusStreams) == 3 })
		// A third enrolled caller (a caller the gateway does not serve is
		// refused before it takes a stream).
		edgeWorker := w.clientOf(t, addr, edge(t, w, "acme", "edge", "hq", "acme"))
		if err := stream(ctx, edgeWorker, chunks(chunk("edge", 0, 1, true, []byte(`[]`)))); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a call over the replica's total: %v, want ResourceExhausted", err)
		}
		initech := w.clientOf(t, addr, svid(t, w, "sync/initech/default/platform-sync-initech"))
		if err := stream(ctx, initech, chunks(chunk("platform-sync-initech", 0, 1, true, []byte(`[]`)))); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a caller of a tenant that is not onboarded, with no stream left: %v, want PermissionDenied", err)
		}
		if got := testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitStreams)); got != 1 {
			t.Fatalf("%v calls throttled in total, want 1", got)
		}
		for _, h := range open {
			h.release()
		}
		test.Eventually(t, "the calls to end", 30*time.Second, func() bool { return testutil.ToFloat64(m.StatusStreams) == 0 })
		if err := stream(ctx, worker1, chunks(chunk(worker, 0, 1, true, message(t, armisUID, meta(armisUID), 1, 1, nil)))); err != nil {
			t.Fatalf("a call after the others ended: %v", err)
		}
	})

	t.Run("the ingest budget answers ResourceExhausted with a retry delay, and a worker lands its run after it", func(t *testing.T) {
		m := server.NewMetrics()
		_, addr := w.serve("gw-budget", m, func(o *server.Options) {
			// A call reserves 2 MiB before it reads; one caller may hold all of it.
			o.Admission = server.Admission{IngestBytes: 6 << 20, IngestBytesPerCaller: 6 << 20, MaxMessageBytes: 2 << 20, RetryAfter: 20 * time.Millisecond}
		})
		// An enrolled caller holds most of the budget with a call it does not finish.
		globexMsg := message(t, globexUID, meta(globexUID), 1, 1, func(d *results.DeviceUpdate) { d.Hostname = strings.Repeat("h", 1500<<10) })
		holder := hold(t, w.clientOf(t, addr, globexPlatformWorker), chunk(globexWorker, 0, 2, false, globexMsg))
		test.Eventually(t, "the holder's chunk to be charged", 30*time.Second, func() bool {
			return testutil.ToFloat64(m.IngestHeldBytes) >= (2<<20)+(1500<<10)
		})
		c := w.clientOf(t, addr, platformWorker)
		msg := message(t, armisUID, meta(armisUID), 1, 1, func(d *results.DeviceUpdate) { d.Hostname = strings.Repeat("w", 700<<10) })
		err := stream(ctx, c, chunks(chunk(worker, 0, 1, true, msg)))
		if status.Code(err) != codes.ResourceExhausted || retryDelay(err) != 20*time.Millisecond {
			t.Fatalf("a call over the ingest budget: %v (retry %s), want ResourceExhausted with a retry delay", err, retryDelay(err))
		}
		// The worker's sender waits as told and sends again (it would give
		// up at once on a ResourceExhausted without a retry delay).
		throttled := testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitIngestMemory))
		s := &workerchunk.Sender{Client: c, AgentID: worker, SegmentDevices: 2, Attempts: 1000, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
			Meta: results.Meta{IntegrationSourceUID: armisUID, SyncRunID: uuid.NewString()}}
		done := make(chan error, 1)
		go func() {
			yes := true
			for i := range 3 {
				err := s.Add(ctx, results.DeviceUpdate{IP: fmt.Sprintf("10.77.0.%d", i), Hostname: strings.Repeat("w", 400<<10), IsAvailable: &yes,
					Metadata: map[string]string{"armis_device_id": fmt.Sprint(7700 + i), "integration_source_uid": armisUID}})
				if err != nil {
					done <- err
					return
				}
			}
			done <- s.Finish(ctx, true, "")
		}()
		test.Eventually(t, "the worker to be throttled again", 30*time.Second, func() bool {
			return testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitIngestMemory)) >= throttled+2
		})
		holder.release()
		if err := <-done; err != nil {
			t.Fatalf("the worker's run after the holder let go: %v", err)
		}
		if s.Sent() != 3 {
			t.Fatalf("%d devices acknowledged, want 3", s.Sent())
		}
		test.Eventually(t, "every charge to be given back", 30*time.Second, func() bool { return testutil.ToFloat64(m.IngestHeldBytes) == 0 })
	})

	t.Run("one caller holds at most its share of the ingest budget, refused before its next call is read, while another worker's run lands", func(t *testing.T) {
		m := server.NewMetrics()
		_, addr := w.serve("gw-share", m, func(o *server.Options) {
			// A call reserves 2 MiB before it reads; one caller may hold 6 of the 12 MiB.
			o.Admission = server.Admission{IngestBytes: 12 << 20, IngestBytesPerCaller: 6 << 20, MaxMessageBytes: 2 << 20, RetryAfter: 20 * time.Millisecond}
		})
		// A compromised worker opens calls it never finishes, one 900 KiB
		// chunk each, on as many connections as it likes, until the gateway
		// refuses one: before the fix it took the whole budget, and the
		// gateway read the chunk of every call it then refused.
		abuser := globexPlatformWorker
		msg := message(t, globexUID, meta(globexUID), 1, 1, func(d *results.DeviceUpdate) { d.Hostname = strings.Repeat("h", 900<<10) })
		throttled := func() float64 {
			return testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitCallerIngestMemory)) +
				testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitIngestMemory))
		}
		call := func() (read float64, refused error) {
			c := w.clientOf(t, addr, abuser)
			ctx, cancel := context.WithCancel(ctx)
			t.Cleanup(cancel)
			charged, chunksBefore, throttledBefore := testutil.ToFloat64(m.IngestHeldBytes), testutil.ToFloat64(m.StatusChunks), throttled()
			st, err := c.StreamStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The gateway may have ended the call already (io.EOF): CloseAndRecv has its status.
			if err := st.Send(chunk(globexWorker, 0, 2, false, msg)); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			// The call is either charged its reservation and its chunk, or refused.
			test.Eventually(t, "the call to be charged or refused", 30*time.Second, func() bool {
				if testutil.ToFloat64(m.IngestHeldBytes) >= charged+(2<<20)+(900<<10) {
					return true
				}
				if throttled() > throttledBefore {
					_, refused = st.CloseAndRecv()
					return true
				}
				return false
			})
			return testutil.ToFloat64(m.StatusChunks) - chunksBefore, refused
		}
		var refused error
		var read float64
		for i := 0; refused == nil && i < 16; i++ {
			read, refused = call()
		}
		if status.Code(refused) != codes.ResourceExhausted || retryDelay(refused) != 20*time.Millisecond {
			t.Fatalf("a call over the caller's share: %v (retry %s), want ResourceExhausted with a retry delay", refused, retryDelay(refused))
		}
		if got := testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitCallerIngestMemory)); got != 1 {
			t.Fatalf("%v calls throttled at the caller's share, want 1", got)
		}
		if held := testutil.ToFloat64(m.IngestHeldBytes); held > 6<<20 {
			t.Fatalf("one caller holds %v bytes, over its share of %d", held, 6<<20)
		}
		if read != 0 {
			t.Fatalf("the gateway read %v chunks of a call it had no memory for, want 0", read)
		}
		// Another tenant's worker lands a run of the same chunks meanwhile.
		s := &workerchunk.Sender{Client: w.clientOf(t, addr, platformWorker), AgentID: worker, SegmentDevices: 1,
			Meta: results.Meta{IntegrationSourceUID: armisUID, SyncRunID: uuid.NewString()}}
		yes := true
		for i := range 3 {
			if err := s.Add(ctx, results.DeviceUpdate{IP: fmt.Sprintf("10.78.0.%d", i), Hostname: strings.Repeat("w", 700<<10), IsAvailable: &yes,
				Metadata: map[string]string{"armis_device_id": fmt.Sprint(7800 + i), "integration_source_uid": armisUID}}); err != nil {
				t.Fatalf("the worker's run next to the abuser: %v", err)
			}
		}
		if err := s.Finish(ctx, true, ""); err != nil {
			t.Fatalf("the worker's run next to the abuser: %v", err)
		}
		if s.Sent() != 3 {
			t.Fatalf("%d devices acknowledged, want 3", s.Sent())
		}
		if got := testutil.ToFloat64(m.Throttled.WithLabelValues(server.LimitIngestMemory)); got != 0 {
			t.Fatalf("%v calls throttled by the replica's budget, want 0: the abuser held it", got)
		}
	})
}

// checkExpiry runs inside TestConfigPlane, on its world (issue 14, defect
// 7): a certificate that expires on an open connection ends the caller's
// ControlStream and refuses its next call Unauthenticated, on the same
// connection, without a new handshake. The replica's clock is the test's:
// the certificate expires when the test moves the clock past it, however
// slow the machine.
func checkExpiry(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clk := testingclock.NewFakeClock(time.Now())
	_, addr := w.serve("gw-expiry", server.NewMetrics(), func(o *server.Options) { o.Clock = clk })
	short, err := w.root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/platform-sync-acme"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := w.clientOf(t, addr, short)
	if _, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "platform-sync-acme"}); err != nil {
		t.Fatalf("GetConfig while the certificate is valid: %v", err)
	}
	st, err := c.ControlStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: "platform-sync-acme"}}}); err != nil {
		t.Fatal(err)
	}
	// The first push comes after the stream set its expiry timer.
	if _, err := st.Recv(); err != nil {
		t.Fatalf("the first push while the certificate is valid: %v", err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	// A second before it expires, everything still works on the connection.
	clk.SetTime(short.Cert.NotAfter.Add(-time.Second))
	if _, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "platform-sync-acme"}); err != nil {
		t.Fatalf("GetConfig a second before the certificate expires: %v", err)
	}
	select {
	case err := <-ended:
		t.Fatalf("the control stream ended before its certificate expired: %v", err)
	default:
	}
	clk.SetTime(short.Cert.NotAfter.Add(time.Second))
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("the control stream ended with %v, want Unauthenticated", err)
		}
	case <-ctx.Done():
		t.Fatal("the control stream outlived its certificate")
	}
	for name, call := range map[string]func() error{
		"GetConfig": func() error {
			_, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "platform-sync-acme"})
			return err
		},
		"Hello": func() error {
			_, err := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: "platform-sync-acme"})
			return err
		},
		"PushStatus": func() error {
			_, err := c.PushStatus(ctx, &pb.GatewayStatusRequest{AgentId: "platform-sync-acme"})
			return err
		},
		"StreamStatus": func() error { return stream(ctx, c, chunks(chunk("platform-sync-acme", 0, 1, true, []byte(`[]`)))) },
		"ControlStream": func() error {
			st, err := c.ControlStream(ctx)
			if err != nil {
				return err
			}
			if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: "platform-sync-acme"}}}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = st.Recv()
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s after the certificate expired: %v, want Unauthenticated", name, err)
		}
	}
}

// checkLogCap runs inside TestConfigPlane, on its world (issue 14, logs):
// refusals and debug lines carry at most server.MaxLoggedBytes of a
// client's string, however long the string.
func checkLogCap(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logs := &syncBuffer{}
	m := server.NewMetrics()
	_, addr := w.serve("gw-logs", m, func(o *server.Options) {
		o.Log = funcr.New(func(prefix, args string) { logs.write(prefix + " " + args) }, funcr.Options{Verbosity: 10})
	})
	const worker = "platform-sync-acme"
	c := w.clientOf(t, addr, svid(t, w, "sync/acme/default/"+worker))
	huge := strings.Repeat("Z", 1<<20)
	uid := sourceUID(t, w, "acme", "acme-armis")
	meta := &results.Meta{IntegrationSourceUID: uid, SyncRunID: uuid.NewString()}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"a 1 MiB agent_id on StreamStatus", func() error {
			return stream(ctx, c, chunks(chunk(huge, 0, 1, true, []byte(`[]`))))
		}, codes.PermissionDenied},
		{"a 1 MiB agent_id on Hello", func() error {
			_, err := c.Hello(ctx, &pb.AgentHelloRequest{AgentId: huge})
			return err
		}, codes.PermissionDenied},
		{"a 1 MiB device partition", func() error {
			msg := message(t, uid, meta, 1, 1, func(d *results.DeviceUpdate) { d.Partition = huge })
			return stream(ctx, c, chunks(chunk(worker, 0, 1, true, msg)))
		}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %s", status.Code(err), tc.code)
			}
			if msg := status.Convert(err).Message(); len(msg) > 2*server.MaxLoggedBytes {
				t.Fatalf("the refusal carries %d bytes", len(msg))
			}
		})
	}
	t.Run("a 1 MiB config_version in a ConfigAck", func(t *testing.T) {
		acks := testutil.ToFloat64(m.ConfigAcks.WithLabelValues(server.AckStale))
		st, err := c.ControlStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: worker}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{ConfigVersion: huge}}}); err != nil {
			t.Fatal(err)
		}
		test.Eventually(t, "the ack to be counted", 30*time.Second, func() bool {
			return testutil.ToFloat64(m.ConfigAcks.WithLabelValues(server.AckStale)) > acks
		})
	})
	text := logs.String()
	if !strings.Contains(text, "[clipped]") {
		t.Fatalf("no clipped client string was logged:\n%.2000s", text)
	}
	if strings.Contains(text, strings.Repeat("Z", server.MaxLoggedBytes+1)) {
		t.Fatalf("a log line carries more than %d bytes of a client's string", server.MaxLoggedBytes)
	}
	for line := range strings.SplitSeq(text, "\n") {
		if len(line) > 4096 {
			t.Fatalf("a log line of %d bytes: %.300s", len(line), line)
		}
	}
}
