package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// TestStoreKeepsTimeByItsClock checks that what the store stamps (runs,
// devices seen without a time of their own, identifiers, the source's
// claims and their retraction) and the ages retention prunes by come from
// its clock (WithClock), not the machine's: a store whose clock reads 2031
// writes 2031, and prunes a month later by that clock.
func TestStoreKeepsTimeByItsClock(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2031, 1, 2, 3, 4, 5, 123456000, time.UTC)
	clk := clocktesting.NewFakePassiveClock(start)
	s, err := store.Open(ctx, pgtest.NewDatabase(t), store.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	// stamped counts the rows of a table of tenant acme, and those whose
	// time columns all read at.
	stamped := func(table, where string, at time.Time) (rows, atTime int) {
		t.Helper()
		err := s.Pool().QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE `+where+`) FROM tenant_acme.`+table, at).Scan(&rows, &atTime)
		if err != nil {
			t.Fatal(err)
		}
		return rows, atTime
	}

	f := newFleet(3)
	first := uuid.NewString()
	sendSegment(t, s, srcUID, first, 0, true, f.devices(0, 3))
	if r := lastRun(t, s, first); !r.Started.Equal(start) || !r.Finished.Equal(start) {
		t.Errorf("run started %v and finished %v, want both at %v", r.Started, r.Finished, start)
	}
	for _, c := range []struct{ table, where string }{
		{"ocsf_devices", "first_seen = $1 AND last_seen = $1"},
		{"device_identifiers", "first_seen = $1 AND last_seen = $1"},
		{"source_devices", "first_seen = $1 AND changed_at = $1"},
	} {
		if rows, at := stamped(c.table, c.where, start); rows == 0 || at != rows {
			t.Errorf("%s: %d of %d rows stamped at %v", c.table, at, rows, start)
		}
	}

	// A full run an hour later without device 2 retracts it then; the
	// deleted source's retraction is stamped at its own time.
	later := start.Add(time.Hour)
	clk.SetTime(later)
	second := uuid.NewString()
	sendSegment(t, s, srcUID, second, 0, true, f.devices(0, 2))
	if _, at := stamped("source_devices", "NOT available AND changed_at = $1", later); at != 1 {
		t.Errorf("%d claims retracted at %v, want 1", at, later)
	}
	gone := start.Add(2 * time.Hour)
	clk.SetTime(gone)
	if n, err := s.RetractSource(ctx, "acme", "default", srcUID); err != nil || n != 2 {
		t.Fatalf("RetractSource: %d, %v; want 2 devices", n, err)
	}
	if _, at := stamped("source_devices", "NOT available AND changed_at = $1", gone); at != 2 {
		t.Errorf("%d claims retracted at %v, want 2", at, gone)
	}

	// A month later by the store's clock, the first run is past the runs'
	// age; the second, the source's last, is kept.
	clk.SetTime(start.Add(31 * day))
	r := newRetainer(t, s, store.Retention{Interval: time.Hour, BatchRows: 100, RunsAge: 30 * day, RunsKeep: 1,
		SegmentsAge: 7 * day, SegmentsKeepRuns: 1})
	round, err := r.Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := round.Pruned[store.TableRuns]; got != 1 {
		t.Errorf("pruned %d runs a month later by the store's clock, want 1 (round %+v)", got, round)
	}
	if runs, err := s.Runs(ctx, "acme", srcUID, 10); err != nil || len(runs) != 1 || runs[0].RunID != second {
		t.Errorf("runs kept %+v (%v), want only %s", runs, err, second)
	}
}
