package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

const day = 24 * time.Hour

// sendSegment applies segment n of a run of a faker source of tenant acme.
func sendSegment(t *testing.T, s *store.Store, source, runID string, n int, complete bool, devs []store.Device) store.Applied {
	t.Helper()
	out, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default",
		Integration: "faker", SourceUID: source, SyncServiceID: "ss", AgentID: "w", RunID: runID, Segment: n,
		RunComplete: complete, FullFetch: complete, Devices: devs})
	if err != nil {
		t.Fatalf("segment %d of run %s: %v", n, runID, err)
	}
	return out
}

// devices are the fleet's devices from..to-1.
func (f *fleet) devices(from, to int) []store.Device {
	out := make([]store.Device, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, f.device(i))
	}
	return out
}

// backdate moves what is recorded of a run so far (its start, end and
// segments) d into the past.
func backdate(t *testing.T, s *store.Store, runID string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	secs := int64(d / time.Second)
	if _, err := s.Pool().Exec(ctx, `UPDATE tenant_acme.sync_runs SET started_at = started_at - $2 * interval '1 second',
    finished_at = finished_at - $2 * interval '1 second' WHERE run_id = $1`, runID, secs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE tenant_acme.applied_segments SET applied_at = applied_at - $2 * interval '1 second'
    WHERE run_id = $1`, runID, secs); err != nil {
		t.Fatal(err)
	}
}

// column reads one text column of a query, sorted.
func column(t *testing.T, s *store.Store, q string, args ...any) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), q, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func sorted(v ...string) []string {
	out := slices.Clone(v)
	slices.Sort(out)
	return out
}

// openDSN opens a Store (a gateway replica) on a database.
func openDSN(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newRetainer(t *testing.T, s *store.Store, r store.Retention) *store.Retainer {
	t.Helper()
	ret, err := store.NewRetainer(s, r, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

// metric finds a sample of a gathered metric by its labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			return m
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return nil
}

// Retention removes old run records, applied segments and merge audit,
// never what idempotence and run status need: each source's newest runs,
// runs still open (whatever their age) and their segments, runs whose
// retraction is held. Segments sent
// again after the prune are still recognised, and the open runs finish
// with the devices their pruned-around segments reported.
func TestRetentionKeepsWhatIdempotenceNeeds(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	f := newFleet(25)
	srcA, srcB, srcC := uuid.NewString(), uuid.NewString(), uuid.NewString()

	// Source A: four runs that ended 60 to 57 days ago, three segments each.
	var a []string
	for i := range 4 {
		id := uuid.NewString()
		sendSegment(t, s, srcA, id, 0, false, f.devices(0, 4))
		sendSegment(t, s, srcA, id, 1, false, f.devices(4, 8))
		sendSegment(t, s, srcA, id, 2, true, f.devices(8, 10))
		backdate(t, s, id, time.Duration(60-i)*day)
		a = append(a, id)
	}
	// Source B: two runs abandoned 60 and 59 days ago (their worker never
	// finished them), then one open now.
	var x []string
	for i := range 2 {
		id := uuid.NewString()
		sendSegment(t, s, srcB, id, 0, false, f.devices(10, 13))
		sendSegment(t, s, srcB, id, 1, false, f.devices(13, 15))
		backdate(t, s, id, time.Duration(60-i)*day)
		x = append(x, id)
	}
	o := uuid.NewString()
	sendSegment(t, s, srcB, o, 0, false, f.devices(10, 13))
	sendSegment(t, s, srcB, o, 1, false, f.devices(13, 15))
	// Source C: a run that ended 45 days ago; one that started 40 days ago
	// and is still open (it sends a segment now); two that ended 38 and 37
	// days ago.
	c0, c1, c2, c3 := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	sendSegment(t, s, srcC, c0, 0, true, f.devices(15, 25))
	backdate(t, s, c0, 45*day)
	sendSegment(t, s, srcC, c1, 0, false, f.devices(15, 20))
	backdate(t, s, c1, 40*day)
	sendSegment(t, s, srcC, c2, 0, true, f.devices(15, 25))
	backdate(t, s, c2, 38*day)
	sendSegment(t, s, srcC, c3, 0, true, f.devices(15, 25))
	backdate(t, s, c3, 37*day)
	sendSegment(t, s, srcC, c1, 1, false, f.devices(20, 25))
	// Merge audit: five rows 100 to 104 days old, one new.
	if _, err := s.Pool().Exec(ctx, `INSERT INTO tenant_acme.merge_audit (from_uid, to_uid, partition, identifier_type, identifier_value, merged_at)
SELECT 'sr:from-' || g, 'sr:to-' || g, 'default', 'mac', 'm' || g, now() - (104 - g) * interval '1 day' FROM generate_series(0, 4) g
UNION ALL SELECT 'sr:from-new', 'sr:to-new', 'default', 'mac', 'm-new', now()`); err != nil {
		t.Fatal(err)
	}
	// Dry runs: two of source A evaluated 40 and 35 days ago (the newer is
	// its latest, which status.dryRun shows, and stays), one of B now; the
	// kept-aside segments of a dry run whose final segment never came, 10
	// days ago, and of one in progress.
	dryA, dryB, stale, fresh := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	if _, err := s.Pool().Exec(ctx, `INSERT INTO tenant_acme.dry_runs (run_id, integration_source_uid, finished_at, result)
VALUES ($1, $4, now() - interval '40 days', '{}'), ($2, $4, now() - interval '35 days', '{}'), ($3, $5, now(), '{}')`,
		uuid.NewString(), dryA, dryB, srcA, srcB); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `INSERT INTO tenant_acme.dry_run_segments (run_id, segment, integration_source_uid, received_at, payload)
VALUES ($1, 0, $3, now() - interval '10 days', '{}'), ($2, 0, $3, now(), '{}')`, stale, fresh, srcA); err != nil {
		t.Fatal(err)
	}
	// A's second run is one whose retraction the brake holds (the column
	// is migration 8's).
	if _, err := s.Pool().Exec(ctx, `ALTER TABLE tenant_acme.sync_runs ADD COLUMN IF NOT EXISTS retraction_state text`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE tenant_acme.sync_runs SET retraction_state = 'held' WHERE run_id = $1`, a[1]); err != nil {
		t.Fatal(err)
	}
	devicesBefore, availableBefore := count(t, s, "acme", ""), count(t, s, "acme", "is_available")

	ret := newRetainer(t, s, store.Retention{Interval: time.Hour, BatchRows: 2, RunsAge: 30 * day, RunsKeep: 2,
		SegmentsAge: 7 * day, SegmentsKeepRuns: 1, AuditAge: 90 * day, AuditKeep: 2})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ret.Collectors()...)
	round, err := ret.Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{store.TableRuns: 3, store.TableSegments: 15, store.TableAudit: 4, store.TableDryRuns: 1, store.TableDryRunSegments: 1}
	if round.Skipped || round.Schemas != 1 || fmt.Sprint(round.Pruned) != fmt.Sprint(want) {
		t.Errorf("round %+v, want %v pruned in 1 schema", round, want)
	}
	if got, want := column(t, s, "SELECT run_id::text FROM tenant_acme.dry_runs"), sorted(dryA, dryB); !slices.Equal(got, want) {
		t.Errorf("dry runs kept %v, want %v", got, want)
	}
	if got, want := column(t, s, "SELECT run_id::text FROM tenant_acme.dry_run_segments"), sorted(fresh); !slices.Equal(got, want) {
		t.Errorf("dry run segments kept %v, want %v", got, want)
	}
	// Runs: A's newest two and its held one, B's newest two (an abandoned
	// one and the open one), C's open run and newest two.
	if got, want := column(t, s, "SELECT run_id::text FROM tenant_acme.sync_runs"), sorted(a[1], a[2], a[3], x[1], o, c1, c2, c3); !slices.Equal(got, want) {
		t.Errorf("runs kept %v, want %v", got, want)
	}
	// Segments: those of each source's newest run and of the open runs.
	if got, want := column(t, s, "SELECT run_id::text || '/' || segment FROM tenant_acme.applied_segments"),
		sorted(a[3]+"/0", a[3]+"/1", a[3]+"/2", o+"/0", o+"/1", c1+"/0", c1+"/1", c3+"/0"); !slices.Equal(got, want) {
		t.Errorf("segments kept %v, want %v", got, want)
	}
	if got := column(t, s, "SELECT identifier_value FROM tenant_acme.merge_audit"); !slices.Equal(got, []string{"m-new", "m4"}) {
		t.Errorf("merge audit kept %v, want the newest two rows", got)
	}

	// Segments sent again are recognised: the last run's last segment, the
	// open runs' segments, even the one sent 40 days ago.
	for _, again := range []struct {
		source, run string
		n           int
		complete    bool
		devs        []store.Device
	}{
		{srcA, a[3], 2, true, f.devices(8, 10)},
		{srcB, o, 0, false, f.devices(10, 13)},
		{srcC, c1, 0, false, f.devices(15, 20)},
	} {
		if got := sendSegment(t, s, again.source, again.run, again.n, again.complete, again.devs); !got.Duplicate {
			t.Errorf("segment %d of run %s sent again was applied again: %+v", again.n, again.run, got)
		}
	}
	// The open runs finish with every device their segments reported:
	// nothing is retracted.
	for _, run := range []struct{ source, id string }{{srcB, o}, {srcC, c1}} {
		got := sendSegment(t, s, run.source, run.id, 2, true, nil)
		if got.Duplicate || got.Run == nil || got.Run.Retracted != 0 {
			t.Errorf("finishing open run %s: %+v, want it to finish retracting nothing", run.id, got.Run)
		}
	}
	if d, av := count(t, s, "acme", ""), count(t, s, "acme", "is_available"); d != devicesBefore || av != availableBefore {
		t.Errorf("after the prune and segments sent again: %d devices, %d available; want %d, %d", d, av, devicesBefore, availableBefore)
	}

	// Metrics: what was pruned, and the tables' sizes.
	for table, n := range want {
		if got := metric(t, reg, "sync_gateway_retention_pruned_rows_total", map[string]string{"table": table}).GetCounter().GetValue(); got != float64(n) {
			t.Errorf("pruned rows of %s: metric %v, want %d", table, got, n)
		}
	}
	for _, table := range []string{store.TableRuns, store.TableSegments, store.TableAudit, "ocsf_devices"} {
		if b := metric(t, reg, "sync_gateway_store_table_bytes", map[string]string{"schema": "tenant_acme", "table": table}).GetGauge().GetValue(); b <= 0 {
			t.Errorf("table %s: %v bytes", table, b)
		}
		metric(t, reg, "sync_gateway_store_table_rows", map[string]string{"schema": "tenant_acme", "table": table})
	}
	if got := metric(t, reg, "sync_gateway_retention_rounds_total", map[string]string{"result": "pruned"}).GetCounter().GetValue(); got != 1 {
		t.Errorf("%v rounds pruned, want 1", got)
	}
}

func TestRetentionSettings(t *testing.T) {
	if err := store.DefaultRetention.Validate(); err != nil {
		t.Errorf("the default: %v", err)
	}
	if err := (store.Retention{}).Validate(); err != nil {
		t.Errorf("disabled: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*store.Retention)
	}{
		{"negative interval", func(r *store.Retention) { r.Interval = -time.Minute }},
		{"no batch", func(r *store.Retention) { r.BatchRows = 0 }},
		{"runs age shorter than a run", func(r *store.Retention) { r.RunsAge = time.Minute }},
		{"segments age shorter than a run", func(r *store.Retention) { r.SegmentsAge = time.Minute }},
		{"audit age shorter than a run", func(r *store.Retention) { r.AuditAge = time.Minute }},
		{"no last run", func(r *store.Retention) { r.RunsKeep = 0 }},
		{"no last run's segments", func(r *store.Retention) { r.SegmentsKeepRuns = 0 }},
		{"segments of runs not kept", func(r *store.Retention) { r.SegmentsKeepRuns = r.RunsKeep + 1 }},
		{"segments kept longer than their runs", func(r *store.Retention) { r.SegmentsAge = r.RunsAge + time.Hour }},
		{"segments kept forever, runs not", func(r *store.Retention) { r.SegmentsAge = 0 }},
		{"negative audit keep", func(r *store.Retention) { r.AuditKeep = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := store.DefaultRetention
			tc.edit(&r)
			if err := r.Validate(); err == nil {
				t.Errorf("%+v accepted", r)
			}
		})
	}
}

// oldRuns records n runs of one source of tenant acme, with segments
// segments each, that ended 60 days ago, and audit merges 100 days old, in
// bulk.
func oldRuns(t *testing.T, s *store.Store, source string, n, segments, audit int) {
	t.Helper()
	ctx := context.Background()
	if err := s.EnsureTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO tenant_acme.sync_runs (run_id, integration_source_uid, sync_service_id, agent_id, started_at, finished_at,
    segments, run_complete, full_fetch)
SELECT gen_random_uuid(), '%s', 'ss', 'w', now() - interval '60 days' + g * interval '1 second',
    now() - interval '60 days' + g * interval '1 second' + interval '10 seconds', %d, true, true FROM generate_series(1, %d) g`, source, segments, n),
		fmt.Sprintf(`INSERT INTO tenant_acme.applied_segments (run_id, segment, devices, applied_at)
SELECT r.run_id, g, 0, r.started_at FROM tenant_acme.sync_runs r, generate_series(0, %d) g WHERE r.integration_source_uid = '%s'`, segments-1, source),
		fmt.Sprintf(`INSERT INTO tenant_acme.merge_audit (from_uid, to_uid, partition, identifier_type, identifier_value, merged_at)
SELECT 'sr:a' || g, 'sr:b' || g, 'default', 'mac', 'm' || g, now() - interval '100 days' FROM generate_series(1, %d) g`, audit),
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

var pruneSettings = store.Retention{Interval: time.Hour, BatchRows: 100, RunsAge: 30 * day, RunsKeep: 1,
	SegmentsAge: 7 * day, SegmentsKeepRuns: 1, AuditAge: 90 * day}

// Replicas prune one at a time: a replica that finds another one pruning
// (holding the retention lock) skips its round; replicas that race prune
// each row once between them.
func TestRetentionOneReplicaAtATime(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	s := openDSN(t, dsn)
	oldRuns(t, s, srcUID, 300, 2, 300)
	other := adminConn(t, dsn) // the session of a replica that is pruning
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1)", store.RetentionLockKey); err != nil {
		t.Fatal(err)
	}
	round, err := newRetainer(t, s, pruneSettings).Round(ctx)
	if err != nil || !round.Skipped || round.Pruned[store.TableRuns] != 0 {
		t.Fatalf("round while another replica prunes: %+v, %v; want it skipped", round, err)
	}
	if n := len(column(t, s, "SELECT run_id::text FROM tenant_acme.sync_runs")); n != 300 {
		t.Fatalf("%d runs left after a skipped round, want 300", n)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock($1)", store.RetentionLockKey); err != nil {
		t.Fatal(err)
	}

	// Three replicas, each with its own pool, race.
	rounds := make([]store.RetentionRound, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range rounds {
		r := s
		if i > 0 {
			r = openDSN(t, dsn)
		}
		ret := newRetainer(t, r, pruneSettings)
		wg.Go(func() { rounds[i], errs[i] = ret.Round(ctx) })
	}
	wg.Wait()
	total := map[string]int64{}
	for i, r := range rounds {
		if errs[i] != nil {
			t.Errorf("replica %d: %v", i, errs[i])
		}
		for k, v := range r.Pruned {
			total[k] += v
		}
	}
	if want := map[string]int64{store.TableRuns: 299, store.TableSegments: 598, store.TableAudit: 300, store.TableDryRuns: 0,
		store.TableDryRunSegments: 0}; fmt.Sprint(total) != fmt.Sprint(want) {
		t.Errorf("replicas pruned %v between them, want %v", total, want)
	}
}

// A prune over many rows never holds up ingest: while each table's first
// batch holds what it deleted (its transaction still open), a segment that
// writes all three tables (a new run, a merge, the run's end) applies.
func TestPruneDoesNotHoldUpIngest(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	s := openDSN(t, dsn)
	oldRuns(t, s, "old-source", 3000, 10, 10000)
	// Devices that the segments below merge, one pair per table.
	tables := []string{store.TableSegments, store.TableRuns, store.TableAudit}
	for i := range tables {
		mac := fmt.Sprintf("00:1b:44:11:3a:%02x", i)
		for _, u := range []struct {
			integration string
			device      store.Device
		}{{"armis", store.Device{DeviceID: fmt.Sprint(70 + i)}}, {"netbox", store.Device{DeviceID: fmt.Sprint("n", i), MACs: []string{mac}}}} {
			if _, err := s.ApplySegment(ctx, store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: u.integration,
				SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: []store.Device{u.device}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	devicesBefore := count(t, s, "acme", "")
	// Another replica, which prepared the tenant's schema when it started
	// (preparing it, once per process, takes the schema's migration lock,
	// which a prune batch holds shared).
	ingest := openDSN(t, dsn)
	if err := ingest.EnsureTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	ret := newRetainer(t, s, store.Retention{Interval: time.Hour, BatchRows: 1000, RunsAge: 30 * day, RunsKeep: 1,
		SegmentsAge: 7 * day, SegmentsKeepRuns: 1, AuditAge: 90 * day})
	done := map[string]bool{}
	store.InBatch(ret, func(ctx context.Context, tx pgx.Tx, table string) {
		if done[table] || !slices.Contains(tables, table) {
			return
		}
		done[table] = true
		var pid int
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Error(err)
			return
		}
		i := slices.Index(tables, table)
		applied := make(chan error, 1)
		go func() {
			out, err := ingest.ApplySegment(ctx, store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "armis",
				SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), RunComplete: true, FullFetch: true,
				Devices: []store.Device{{DeviceID: fmt.Sprint(70 + i), MACs: []string{fmt.Sprintf("00:1b:44:11:3a:%02x", i)}}}})
			if err == nil && (out.Duplicate || out.Merges != 1) {
				err = fmt.Errorf("applied %+v, want one merge", out)
			}
			applied <- err
		}()
		// The segment completes, or waits for this transaction: then the
		// prune holds up ingest.
		for {
			select {
			case err := <-applied:
				if err != nil {
					t.Errorf("segment applied during the prune of %s: %v", table, err)
				}
				return
			default:
			}
			var waiting int
			if err := ingest.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid).Scan(&waiting); err != nil {
				t.Error(err)
				return
			}
			if waiting > 0 {
				t.Errorf("a segment waits for the prune of %s", table)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	round, err := ret.Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != len(tables) {
		t.Errorf("segments applied during the prune of %v, want all of %v", done, tables)
	}
	if want := map[string]int64{store.TableRuns: 2999, store.TableSegments: 29990, store.TableAudit: 10000, store.TableDryRuns: 0,
		store.TableDryRunSegments: 0}; fmt.Sprint(round.Pruned) != fmt.Sprint(want) {
		t.Errorf("pruned %v, want %v", round.Pruned, want)
	}
	if got, want := count(t, s, "acme", ""), devicesBefore-len(tables); got != want {
		t.Errorf("%d devices after the merges, want %d", got, want)
	}
	if got := column(t, s, "SELECT count(*)::text FROM tenant_acme.merge_audit"); !slices.Equal(got, []string{fmt.Sprint(len(tables))}) {
		t.Errorf("merge audit rows %v, want the %d new merges", got, len(tables))
	}
}
