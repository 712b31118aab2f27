package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// inventory is a source's devices by ordinal, each with its hostname.
type inventory map[int]string

func (inv inventory) devices() []store.Device {
	yes := true
	out := make([]store.Device, 0, len(inv))
	for i := range 10_000 {
		host, ok := inv[i]
		if !ok {
			continue
		}
		out = append(out, store.Device{DeviceID: fmt.Sprintf("fk-%d", i), IP: fmt.Sprintf("10.1.%d.%d", i>>8, i&255), Hostname: host,
			MACs: []string{mac(i, 0)}, IsAvailable: &yes, Metadata: map[string]string{"integration_type": "faker"}})
	}
	return out
}

// sendRun applies devs as one run of segments of per devices.
func sendRun(t *testing.T, s *store.Store, devs []store.Device, per int, full bool, limit *int) string {
	t.Helper()
	run, _ := sendRunAs(t, s, devs, per, full, limit, false)
	return run
}

// sendRunAs is sendRun, as a dry run when dry; it returns the final
// segment's outcome too.
func sendRunAs(t *testing.T, s *store.Store, devs []store.Device, per int, full bool, limit *int, dry bool) (string, store.Applied) {
	t.Helper()
	runID := uuid.NewString()
	for seg, start := 0, 0; ; seg, start = seg+1, start+per {
		end := min(len(devs), start+per)
		last := end == len(devs)
		mode := "incremental"
		if full {
			mode = "full"
		}
		applied, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default",
			Integration: "faker", SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: runID, Segment: seg, RunComplete: last,
			FullFetch: full && last, Mode: mode, MaxRetractPercent: limit, DryRun: dry, Devices: devs[start:end]})
		if err != nil {
			t.Fatal(err)
		}
		if last {
			return runID, applied
		}
	}
}

// lastRun is a finished run of the test source.
func lastRun(t *testing.T, s *store.Store, runID string) store.RunRecord {
	t.Helper()
	runs, err := s.Runs(context.Background(), "acme", srcUID, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.RunID == runID {
			return r
		}
	}
	t.Fatalf("no finished run %s: %+v", runID, runs)
	return store.RunRecord{}
}

// edit changes inv, a source's n devices, as its second run reports them:
// k renamed, r gone, a new, and device 0 reporting too the MAC by which
// another source (which edit stores in s) alone knows a device, so that the
// two merge. It returns the second run's devices.
func edit(t *testing.T, s *store.Store, inv inventory, n, k, r, a int) []store.Device {
	t.Helper()
	other := store.Device{MACs: []string{"00:1b:ee:00:00:01"}, IP: "10.9.9.9"}
	if _, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default",
		Integration: "netbox", SourceUID: "other", SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(),
		Devices: []store.Device{other}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= k; i++ {
		inv[i] = fmt.Sprintf("renamed-%d", i)
	}
	for i := n - r; i < n; i++ {
		delete(inv, i)
	}
	for i := n; i < n+a; i++ {
		inv[i] = fmt.Sprintf("host-%d", i)
	}
	devs := inv.devices()
	devs[0].MACs = append(devs[0].MACs, other.MACs...)
	return devs
}

// replicas opens a store on a fresh database with a device cache of cache
// entries, and, when two, a second one on the same database as another
// replica would (otherwise second is first).
func replicas(t *testing.T, cache int, two bool) (first, second *store.Store) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	first = openCache(t, dsn, cache)
	second = first
	if two {
		second = openCache(t, dsn, cache)
	}
	return first, second
}

func openCache(t *testing.T, dsn string, cache int) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn, store.WithCacheEntries(cache))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

type counts struct{ fetched, created, updated, unchanged, merged, retracted int }

func countsOf(r store.RunRecord) counts {
	return counts{r.Devices + r.Refused, r.Created, r.Updated, r.Unchanged, r.Merged, r.Retracted}
}

// TestRunCountsWhatChanged runs a source twice on real PostgreSQL, the
// second time with k devices changed, r gone, a new and one device joining
// a device another source knows by its MAC alone, and checks that the runs'
// counts are exactly those changes, whichever way the store resolves the
// segments: from its cache, from lookups, or as a second replica whose
// cache knows nothing.
func TestRunCountsWhatChanged(t *testing.T) {
	const n, k, r, a = 300, 17, 11, 23
	for _, tc := range []struct {
		name     string
		cache    int
		per      int
		replicas bool
	}{
		{"cached, one segment", store.DefaultCacheEntries, n, false},
		{"cached, many segments", store.DefaultCacheEntries, 40, false},
		{"no cache", 0, 64, false},
		{"second replica", store.DefaultCacheEntries, 64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second := replicas(t, tc.cache, tc.replicas)
			inv := inventory{}
			for i := range n {
				inv[i] = fmt.Sprintf("host-%d", i)
			}
			off := 100
			run1 := sendRun(t, first, inv.devices(), tc.per, true, &off)
			if got, want := countsOf(lastRun(t, first, run1)), (counts{fetched: n, created: n}); got != want {
				t.Fatalf("first run: %+v, want %+v", got, want)
			}
			devs := edit(t, first, inv, n, k, r, a)
			run2 := sendRun(t, second, devs, tc.per, true, &off)
			want := counts{fetched: n - r + a, created: a, updated: k, unchanged: n - r - k, merged: 1, retracted: r}
			if got := countsOf(lastRun(t, second, run2)); got != want {
				t.Fatalf("second run: %+v, want %+v", got, want)
			}
			// The same inventory again changes nothing.
			run3 := sendRun(t, first, devs, tc.per, true, &off)
			if got, want := countsOf(lastRun(t, first, run3)), (counts{fetched: n - r + a, unchanged: n - r + a}); got != want {
				t.Fatalf("third run: %+v, want %+v", got, want)
			}
		})
	}
}

func available(t *testing.T, s *store.Store) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM tenant_acme.source_devices WHERE integration_source_uid = $1 AND available`,
		srcUID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetractionBrake holds a full run's retraction over the source's
// limit on real PostgreSQL: nothing is retracted, the run records how much
// it would have, a later incremental run that reports some of those devices
// again takes them out of it, and the approval retracts the rest, once. A
// retraction within the limit passes, and a later full run supersedes a
// held one, whose approval then changes nothing.
func TestRetractionBrake(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	limit := 20
	inv := inventory{}
	for i := range 100 {
		inv[i] = fmt.Sprintf("host-%d", i)
	}
	sendRun(t, s, inv.devices(), 50, true, &limit)

	// 90% gone: held.
	for i := 10; i < 100; i++ {
		delete(inv, i)
	}
	held := sendRun(t, s, inv.devices(), 50, true, &limit)
	run := lastRun(t, s, held)
	if run.Held == nil || *run.Held != (store.Held{Devices: 90, Of: 100, Limit: 20, State: store.HeldState}) || run.Retracted != 0 {
		t.Fatalf("the 90%% run: held %+v, retracted %d; want 90 of 100 held at 20%%, nothing retracted", run.Held, run.Retracted)
	}
	if got := available(t, s); got != 100 {
		t.Fatalf("%d devices available after the held run, want 100", got)
	}
	if got := count(t, s, "acme", "is_available"); got != 100 {
		t.Fatalf("%d devices available after the held run, want 100", got)
	}
	// An incremental run reports five of them again: they stay.
	back := inventory{}
	for i := 10; i < 15; i++ {
		back[i] = fmt.Sprintf("host-%d", i)
	}
	sendRun(t, s, back.devices(), 50, false, &limit)

	// An approval of another run, or of no run, does nothing.
	if _, err := s.ReleaseRetraction(ctx, "acme", "default", srcUID, uuid.NewString()); !errors.Is(err, store.ErrUnknownRun) {
		t.Fatalf("releasing an unknown run: %v, want ErrUnknownRun", err)
	}
	if _, err := s.ReleaseRetraction(ctx, "acme", "default", "another-source", held); !errors.Is(err, store.ErrUnknownRun) {
		t.Fatalf("releasing the run for another source: %v, want ErrUnknownRun", err)
	}
	rel, err := s.ReleaseRetraction(ctx, "acme", "default", srcUID, held)
	if err != nil || rel != (store.Release{State: store.ReleasedState, Released: true, Retracted: 85, Available: 15}) {
		t.Fatalf("release: %+v, %v; want 85 retracted", rel, err)
	}
	if got := available(t, s); got != 15 {
		t.Fatalf("%d devices available after the release, want 15", got)
	}
	if got := count(t, s, "acme", "is_available"); got != 15 {
		t.Fatalf("%d devices available after the release, want 15", got)
	}
	// Once only.
	if rel, err := s.ReleaseRetraction(ctx, "acme", "default", srcUID, held); err != nil || rel != (store.Release{State: store.ReleasedState}) {
		t.Fatalf("second release: %+v, %v; want nothing done", rel, err)
	}
	run = lastRun(t, s, held)
	if run.Held == nil || run.Held.State != store.ReleasedState || run.Held.Decided.IsZero() || run.Retracted != 85 {
		t.Fatalf("the released run: %+v (held %+v)", run, run.Held)
	}

	// The 15 reported again, the newest 3 gone (20%): within the limit.
	for i := 10; i < 15; i++ {
		inv[i] = fmt.Sprintf("host-%d", i)
	}
	for i := 12; i < 15; i++ {
		delete(inv, i)
	}
	within := sendRun(t, s, inv.devices(), 50, true, &limit)
	if run := lastRun(t, s, within); run.Held != nil || run.Retracted != 3 {
		t.Fatalf("a 20%% retraction: held %+v, retracted %d; want 3 retracted", run.Held, run.Retracted)
	}

	// Held, then superseded by the next full run: its approval does nothing.
	for i := 1; i < 12; i++ {
		delete(inv, i)
	}
	superseded := sendRun(t, s, inv.devices(), 50, true, &limit)
	if run := lastRun(t, s, superseded); run.Held == nil || run.Held.Devices != 11 || run.Held.Of != 12 {
		t.Fatalf("an 11 of 12 retraction: held %+v, want held", run.Held)
	}
	next := sendRun(t, s, inv.devices(), 50, true, &limit)
	if run := lastRun(t, s, next); run.Held == nil || run.Held.State != store.HeldState {
		t.Fatalf("the next full run: held %+v, want held again", run.Held)
	}
	if rel, err := s.ReleaseRetraction(ctx, "acme", "default", srcUID, superseded); err != nil || rel != (store.Release{State: store.SupersededState}) {
		t.Fatalf("releasing a superseded run: %+v, %v; want nothing done", rel, err)
	}
	if got := available(t, s); got != 12 {
		t.Fatalf("%d devices available, want 12", got)
	}
	// No brake: the same run retracts.
	off := 100
	free := sendRun(t, s, inv.devices(), 50, true, &off)
	if run := lastRun(t, s, free); run.Held != nil || run.Retracted != 11 {
		t.Fatalf("without a brake: held %+v, retracted %d; want 11 retracted", run.Held, run.Retracted)
	}
}
