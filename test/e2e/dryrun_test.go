package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/netboxemu"
)

// TestDryRunPredictsTheRealRun runs a NetBox source on the whole system
// (API server, manager, gateway over mTLS, PostgreSQL, a worker, the NetBox
// emulator). After a first real run, the inventory changes (k devices
// renamed, r deleted) and the source's query is edited to take in the
// planned devices too, with spec.dryRun set: the dry run's status.dryRun
// predicts a created, k updated, r retracted and the rest unchanged, while
// PostgreSQL and status.lastRun stay as the first run left them. Then
// spec.dryRun is unset, and the real run that follows counts exactly what
// the dry run predicted, and retracts the devices it sampled.
func TestDryRunPredictsTheRealRun(t *testing.T) {
	ctx := context.Background()
	const slug = "dryrun"
	netbox := netboxemu.New(netboxemu.Options{Seed: 17, Devices: 400})
	netboxURL := netbox.Start()
	defer netbox.Close()
	const k, r = 4, 3
	active, planned := activeAndPlanned(t, netbox, 10*(k+r))
	src := hourlyNetBoxSource(slug, netboxURL)
	sys := startSystem(t, netboxTenant(slug, netbox, src), slug)
	patch := func(p string) {
		t.Helper()
		if err := sys.c.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	query := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := sys.devices.Pool().QueryRow(ctx, fmt.Sprintf(q, store.Schema(slug)), args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var st v1alpha1.IntegrationSourceStatus
	test.Eventually(t, "the first run", 3*time.Minute, func() bool {
		st = sys.status(src)
		return st.LastRun != nil
	})
	run1 := *st.LastRun
	n := len(active)
	if run1.Result != v1alpha1.SyncResultSuccess || run1.Counts.Created != int64(n) {
		t.Fatalf("the first run: %+v, want a Success that created %d devices", run1, n)
	}
	devices, claims := query(`SELECT count(*) FROM %s.ocsf_devices`), query(`SELECT count(*) FROM %s.source_devices WHERE available`)

	// The edit, rehearsed: k renamed, r deleted, a query that adds the
	// planned devices.
	for i, id := range active[:k] {
		if !netbox.RenameDevice(id, fmt.Sprintf("renamed-%d", i)) {
			t.Fatalf("renaming device %d", id)
		}
	}
	netbox.DeleteDevices(active[k : k+r]...)
	patch(`{"spec":{"dryRun":true,"queries":[{"label":"active","query":"status=active"},{"label":"planned","query":"status=planned"}]}}`)
	test.Eventually(t, "the dry run's status", 3*time.Minute, func() bool {
		st = sys.status(src)
		return st.DryRun != nil
	})
	dry := *st.DryRun
	a := len(planned)
	want := v1alpha1.RunCounts{Fetched: int64(n - r + a), Created: int64(a), Updated: k, Unchanged: int64(n - k - r), Retracted: r}
	if dry.Result != v1alpha1.SyncResultSuccess || dry.Counts != want || dry.Available != int64(n) {
		t.Fatalf("the dry run predicted %+v (%s) of %d available, want %+v of %d", dry.Counts, dry.Result, dry.Available, want, n)
	}
	if len(dry.Created) != min(a, v1alpha1.DryRunSampleLimit) || len(dry.Updated) != k || len(dry.Retracted) != r {
		t.Fatalf("the dry run's samples: created %q, updated %q, retracted %q", dry.Created, dry.Updated, dry.Retracted)
	}
	cur := &v1alpha1.IntegrationSource{}
	if err := sys.c.Get(ctx, client.ObjectKeyFromObject(src), cur); err != nil {
		t.Fatal(err)
	}
	if dry.ObservedGeneration != cur.Generation {
		t.Fatalf("status.dryRun.observedGeneration %d, want the edited spec's %d", dry.ObservedGeneration, cur.Generation)
	}
	if st.LastRun == nil || st.LastRun.ID != run1.ID || st.DevicesDiscovered != int64(n) {
		t.Fatalf("after the dry run status.lastRun is %+v with %d devices; want the first run's, %d", st.LastRun, st.DevicesDiscovered, n)
	}
	if d, c := query(`SELECT count(*) FROM %s.ocsf_devices`), query(`SELECT count(*) FROM %s.source_devices WHERE available`); d != devices || c != claims {
		t.Fatalf("after the dry run PostgreSQL holds %d devices and %d claims, want %d and %d as before", d, c, devices, claims)
	}
	if h := query(`SELECT count(*) FROM %s.ocsf_devices WHERE hostname LIKE 'renamed-%%'`); h != 0 {
		t.Fatalf("the dry run renamed %d devices", h)
	}

	// The real run does what the dry run said.
	patch(`{"spec":{"dryRun":false}}`)
	test.Eventually(t, "the real run", 3*time.Minute, func() bool {
		st = sys.status(src)
		return st.LastRun != nil && st.LastRun.ID != run1.ID
	})
	if st.LastRun.Counts != dry.Counts || st.LastRun.Result != dry.Result {
		t.Fatalf("the real run counted %+v (%s), the dry run predicted %+v (%s)", st.LastRun.Counts, st.LastRun.Result, dry.Counts, dry.Result)
	}
	for _, e := range dry.Retracted {
		uid, _, _ := strings.Cut(e, " ")
		if query(`SELECT count(*) FROM %s.source_devices WHERE device_uid = $1 AND NOT available`, uid) != 1 {
			t.Fatalf("the dry run predicted %s retracted; the real run did not retract it", e)
		}
	}
	if st.DryRun == nil || st.DryRun.ID != dry.ID {
		t.Fatalf("status.dryRun after the real run: %+v, want the dry run kept", st.DryRun)
	}
}
