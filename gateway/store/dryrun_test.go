package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
)

// snapshot is a digest of every table a run writes in the acme schema:
// equal snapshots mean nothing a run stores changed.
func snapshot(t *testing.T, s *store.Store) string {
	t.Helper()
	var parts []string
	for _, table := range []string{"ocsf_devices", "device_identifiers", "source_devices", "sync_runs", "applied_segments", "merge_audit",
		"held_retractions", "partition_generations"} {
		var digest *string
		if err := s.Pool().QueryRow(context.Background(),
			fmt.Sprintf(`SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM tenant_acme.%s t`, table)).Scan(&digest); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf("%s=%v", table, ptr(digest)))
	}
	return strings.Join(parts, " ")
}

func ptr(s *string) string {
	if s == nil {
		return "<empty>"
	}
	return *s
}

// uidsOf are the device uids of a dry run's sample entries.
func uidsOf(sample []string) []string {
	out := make([]string, 0, len(sample))
	for _, e := range sample {
		uid, _, _ := strings.Cut(e, " ")
		out = append(out, uid)
	}
	return out
}

// retractedUIDs are the devices of the test source that are no longer
// available for it.
func retractedUIDs(t *testing.T, s *store.Store) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(),
		`SELECT device_uid FROM tenant_acme.source_devices WHERE integration_source_uid = $1 AND NOT available ORDER BY device_uid`, srcUID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var uid string
		if err := rows.Scan(&uid); err != nil {
			t.Fatal(err)
		}
		out = append(out, uid)
	}
	return out
}

// TestDryRunPredictsTheRealRun evaluates an edited inventory as a dry run
// on real PostgreSQL, in several segments: every table a run writes is
// unchanged after it, and the real run of the same inventory then does
// exactly what the dry run predicted: the same counts of created, updated,
// unchanged, merged and retracted devices, and the sampled devices among
// those it created and retracted. A 90% retraction is predicted as held by
// the brake, as the real run then holds it. With the cache on, off, and
// resolved by a second replica.
func TestDryRunPredictsTheRealRun(t *testing.T) {
	const n, k, r, a = 300, 17, 11, 23
	for _, tc := range []struct {
		name     string
		cache    int
		per      int
		replicas bool
	}{
		{"cached, many segments", store.DefaultCacheEntries, 40, false},
		{"no cache, one segment", 0, n + a, false},
		{"second replica", store.DefaultCacheEntries, 64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			first, second := replicas(t, tc.cache, tc.replicas)
			inv := inventory{}
			for i := range n {
				inv[i] = fmt.Sprintf("host-%d", i)
			}
			limit := 20
			sendRun(t, first, inv.devices(), tc.per, true, &limit)
			devs := edit(t, first, inv, n, k, r, a)

			before := snapshot(t, first)
			dryID, applied := sendRunAs(t, first, devs, tc.per, true, &limit, true)
			if got := snapshot(t, first); got != before {
				t.Fatalf("the dry run changed the store:\nbefore %s\nafter  %s", before, got)
			}
			if applied.DryRun == nil || applied.Run != nil {
				t.Fatalf("the dry run's final segment: dry run %+v, run %+v; want a dry run's record and no run", applied.DryRun, applied.Run)
			}
			rec := applied.DryRun
			if rec.RunID != dryID {
				t.Fatalf("the dry run's record names run %s, want %s", rec.RunID, dryID)
			}
			// Recorded, so that the final segment sent again is a duplicate.
			if got := column(t, first, "SELECT run_id::text FROM tenant_acme.dry_runs"); !slices.Equal(got, []string{dryID}) {
				t.Fatalf("dry runs recorded %v, want %s", got, dryID)
			}
			want := counts{fetched: n - r + a, created: a, updated: k, unchanged: n - r - k, merged: 1, retracted: r}
			if got := countsOf(rec.RunRecord); got != want || rec.Available != n || rec.Held != nil {
				t.Fatalf("dry run: %+v of %d available, held %+v; want %+v of %d, not held", got, rec.Available, rec.Held, want, n)
			}
			if len(rec.CreatedSample) != 10 || len(rec.UpdatedSample) != 10 || len(rec.MergedSample) != 1 || len(rec.RetractedSample) != 10 {
				t.Fatalf("samples: created %q, updated %q, merged %q, retracted %q; want 10, 10, 1, 10", rec.CreatedSample, rec.UpdatedSample,
					rec.MergedSample, rec.RetractedSample)
			}

			realID := sendRun(t, second, devs, tc.per, true, &limit)
			if got := countsOf(lastRun(t, second, realID)); got != countsOf(rec.RunRecord) {
				t.Fatalf("the real run did %+v, the dry run predicted %+v", got, countsOf(rec.RunRecord))
			}
			gone := retractedUIDs(t, first)
			for _, uid := range uidsOf(rec.RetractedSample) {
				if !slices.Contains(gone, uid) {
					t.Fatalf("the dry run predicted %s retracted; the real run retracted %q", uid, gone)
				}
			}
			for _, e := range rec.CreatedSample {
				uid, label, _ := strings.Cut(e, " ")
				var host string
				if err := first.Pool().QueryRow(ctx, `SELECT hostname FROM tenant_acme.ocsf_devices WHERE uid = $1`, uid).Scan(&host); err != nil ||
					label != "("+host+")" || !strings.HasPrefix(host, "host-") {
					t.Fatalf("created sample %q: stored as %q (%v)", e, host, err)
				}
			}

			// A 90% retraction: the dry run predicts the brake holding it.
			kept := inventory{}
			for i := range 30 {
				kept[i] = inv[i]
			}
			before = snapshot(t, first)
			_, applied = sendRunAs(t, first, kept.devices(), tc.per, true, &limit, true)
			if got := snapshot(t, first); got != before {
				t.Fatalf("the held dry run changed the store")
			}
			held := applied.DryRun
			if held == nil || held.Held == nil || held.Retracted != n-r+a-30 || held.Held.Devices != held.Retracted {
				t.Fatalf("the 90%% dry run: %+v; want the brake holding %d", held, n-r+a-30)
			}
			heldID := sendRun(t, second, kept.devices(), tc.per, true, &limit)
			if run := lastRun(t, second, heldID); run.Held == nil || *run.Held != *held.Held {
				t.Fatalf("the real run held %+v, the dry run predicted %+v", run.Held, held.Held)
			}
		})
	}
}

// TestDryRunStaysWhatItBegan: a run keeps the kind its first segment gave
// it when its source enters or leaves dry-run mode while it runs; a final
// segment sent again changes nothing; a run id of another source is
// refused.
func TestDryRunStaysWhatItBegan(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if err := s.EnsureTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	inv := inventory{}
	for i := range 20 {
		inv[i] = fmt.Sprintf("host-%d", i)
	}
	devs := inv.devices()
	seg := func(run string, n int, last, dry bool) store.Segment {
		return store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "faker", SourceUID: srcUID,
			SyncServiceID: "ss", AgentID: "w", RunID: run, Segment: n, RunComplete: last, FullFetch: last, DryRun: dry,
			Devices: devs[n*10 : n*10+10]}
	}
	// Begun dry, finished as a real segment: still dry.
	dry := uuid.NewString()
	before := snapshot(t, s)
	if _, err := s.ApplySegment(ctx, seg(dry, 0, false, true)); err != nil {
		t.Fatal(err)
	}
	final, err := s.ApplySegment(ctx, seg(dry, 1, true, false))
	if err != nil {
		t.Fatal(err)
	}
	if final.DryRun == nil || final.DryRun.Created != 20 || final.Run != nil || snapshot(t, s) != before {
		t.Fatalf("a run begun dry: %+v; want a dry run predicting 20 created, the store unchanged", final)
	}
	// Sent again: a duplicate.
	if again, err := s.ApplySegment(ctx, seg(dry, 1, true, true)); err != nil || !again.Duplicate || again.DryRun != nil {
		t.Fatalf("the final segment again: %+v, %v; want a duplicate", again, err)
	}
	// Begun real, finished as a dry segment: real.
	real := uuid.NewString()
	if _, err := s.ApplySegment(ctx, seg(real, 0, false, false)); err != nil {
		t.Fatal(err)
	}
	final, err = s.ApplySegment(ctx, seg(real, 1, true, true))
	if err != nil {
		t.Fatal(err)
	}
	if final.Run == nil || final.DryRun != nil || count(t, s, "acme", "true") != 20 {
		t.Fatalf("a run begun real: %+v; want a real run storing 20 devices", final)
	}
	// Another source's dry run id.
	other := uuid.NewString()
	if _, err := s.ApplySegment(ctx, seg(other, 0, false, true)); err != nil {
		t.Fatal(err)
	}
	bad := seg(other, 1, true, true)
	bad.SourceUID = "another"
	if _, err := s.ApplySegment(ctx, bad); err == nil || !strings.Contains(err.Error(), store.ErrRunSource.Error()) {
		t.Fatalf("another source's dry run id: %v; want %v", err, store.ErrRunSource)
	}
}
