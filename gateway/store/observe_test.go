package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// TestSourceStates follows a source through runs: devices by state, the
// last successful run (not a failed or held one), a held retraction until
// it is released.
func TestSourceStates(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	state := func() store.SourceState {
		t.Helper()
		all, err := s.SourceStates(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		return all[srcUID]
	}
	inv := inventory{}
	for i := range 10 {
		inv[i] = "h"
	}
	limit := 20
	run1 := sendRun(t, s, inv.devices(), 4, true, &limit)
	st := state()
	if st.Available != 10 || st.Unavailable != 0 || st.HeldRetraction != 0 || !st.LastSuccess.Equal(lastRun(t, s, run1).Finished) {
		t.Fatalf("after a first run: %+v", st)
	}
	// 9 of 10 gone: held, and not a success.
	time.Sleep(10 * time.Millisecond)
	run2 := sendRun(t, s, inventory{0: "h"}.devices(), 4, true, &limit)
	if st = state(); st.Available != 10 || st.HeldRetraction != 9 || !st.LastSuccess.Equal(lastRun(t, s, run1).Finished) {
		t.Fatalf("after a held run: %+v", st)
	}
	// Released: the devices unavailable, the run a success.
	if _, err := s.ReleaseRetraction(ctx, "acme", "default", srcUID, run2); err != nil {
		t.Fatal(err)
	}
	if st = state(); st.Available != 1 || st.Unavailable != 9 || st.HeldRetraction != 0 || !st.LastSuccess.Equal(lastRun(t, s, run2).Finished) {
		t.Fatalf("after the release: %+v", st)
	}
	if other, err := s.SourceStates(ctx, "globex"); err != nil || len(other) != 0 {
		t.Fatalf("another tenant's states: %v %v", other, err)
	}
}
