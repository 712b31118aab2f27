package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/netboxemu"
)

// TestRunHistoryAndRetractionBrake runs a NetBox source on the whole system
// (API server, manager, gateway over mTLS, PostgreSQL, a worker, the NetBox
// emulator) and edits the inventory between runs:
//   - each run's counts on status.lastRun are exactly what changed in the
//     emulator: k renamed devices updated, r deleted ones retracted, the a
//     devices of a new query created, the rest unchanged;
//   - status.history keeps the last spec.historyLimit runs, newest first;
//   - a full run that would retract 10% of the source's devices does;
//   - one that would retract 90% (the inventory emptied to a tenth) is
//     held: nothing is retracted and status says how much would be, until
//     the approve-retraction annotation names the run, which releases it.
func TestRunHistoryAndRetractionBrake(t *testing.T) {
	ctx := context.Background()
	const slug = "hooli"
	netbox := netboxemu.New(netboxemu.Options{Seed: 11, Devices: 600})
	netboxURL := netbox.Start()
	defer netbox.Close()
	const k, r = 6, 5
	active, planned := activeAndPlanned(t, netbox, 10*(k+r))
	src := hourlyNetBoxSource(slug, netboxURL)
	src.Spec.HistoryLimit = 3
	sys := startSystem(t, netboxTenant(slug, netbox, src), slug)
	patch := func(p string) {
		t.Helper()
		if err := sys.c.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	// next waits for the run after prev (an id; "" for the first) to be recorded.
	next := func(what, prev string) v1alpha1.IntegrationSourceStatus {
		t.Helper()
		var st v1alpha1.IntegrationSourceStatus
		test.Eventually(t, what, 3*time.Minute, func() bool {
			st = sys.status(src)
			return st.LastRun != nil && st.LastRun.ID != prev
		})
		return st
	}
	// claimed counts the devices the source reports available, in PostgreSQL.
	claimed := func() int {
		t.Helper()
		var n int
		if err := sys.devices.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.source_devices WHERE integration_source_uid = $1 AND available`,
			store.Schema(slug)), string(src.UID)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Run 1: every active device is new.
	n := len(active)
	st := next("the first run", "")
	run1 := *st.LastRun
	if run1.Result != v1alpha1.SyncResultSuccess || run1.Mode != v1alpha1.SyncModeFull || run1.Counts != (v1alpha1.RunCounts{Fetched: int64(n), Created: int64(n)}) {
		t.Fatalf("the first run: %+v, want a full Success that created %d devices", run1, n)
	}

	// k renamed, r deleted, and a query that adds the planned devices.
	for i, id := range active[:k] {
		if !netbox.RenameDevice(id, fmt.Sprintf("renamed-%d", i)) {
			t.Fatalf("renaming device %d", id)
		}
	}
	netbox.DeleteDevices(active[k : k+r]...)
	patch(`{"spec":{"queries":[{"label":"active","query":"status=active"},{"label":"planned","query":"status=planned"}]}}`)
	st = next("the second run", run1.ID)
	run2 := *st.LastRun
	a := len(planned)
	want := v1alpha1.RunCounts{Fetched: int64(n - r + a), Created: int64(a), Updated: k, Unchanged: int64(n - k - r), Retracted: r}
	if run2.Result != v1alpha1.SyncResultSuccess || run2.Counts != want {
		t.Fatalf("the second run counted %+v (%s), want %+v", run2.Counts, run2.Result, want)
	}
	if st.DevicesDiscovered != int64(n-r+a) || len(st.History) != 2 || st.History[0].ID != run2.ID || st.History[1].ID != run1.ID {
		t.Fatalf("after two runs: %d devices, history %+v", st.DevicesDiscovered, st.History)
	}

	// present are the devices the source now reports.
	present := slices.Concat(active[k+r:], active[:k], planned)
	slices.Sort(present)
	retract := func(pct int) []int {
		gone := present[:len(present)*pct/100]
		netbox.DeleteDevices(gone...)
		present = present[len(gone):]
		return gone
	}

	// 10% gone: within the brake (default 20%), retracted at once.
	gone := retract(10)
	patch(`{"spec":{"pageSize":99}}`) // a changed source runs at once, in full
	st = next("the 10% run", run2.ID)
	run3 := *st.LastRun
	if run3.Result != v1alpha1.SyncResultSuccess || run3.Retraction != nil || run3.Counts.Retracted != int64(len(gone)) ||
		st.DevicesDiscovered != int64(len(present)) {
		t.Fatalf("the 10%% run: %+v, %d devices; want %d retracted and %d left", run3, st.DevicesDiscovered, len(gone), len(present))
	}

	// 90% gone: held.
	before := len(present)
	gone = retract(90)
	patch(`{"spec":{"pageSize":98}}`)
	st = next("the 90% run", run3.ID)
	run4 := *st.LastRun
	held := v1alpha1.HeldRetraction{Devices: int64(len(gone)), Of: int64(before), MaxPercent: v1alpha1.DefaultMaxRetractPercent, State: v1alpha1.RetractionHeld}
	if run4.Result != v1alpha1.SyncResultHeldRetraction || run4.Retraction == nil || *run4.Retraction != held || run4.Counts.Retracted != 0 ||
		st.LastSyncResult != v1alpha1.SyncResultHeldRetraction {
		t.Fatalf("the 90%% run: %+v (retraction %+v), want %+v held", run4, run4.Retraction, held)
	}
	if st.DevicesDiscovered != int64(before) || len(st.History) != 3 || st.History[0].ID != run4.ID || st.History[2].ID != run2.ID {
		t.Fatalf("after the held run: %d devices (want %d, nothing retracted), history %+v", st.DevicesDiscovered, before, st.History)
	}
	synced := st.Conditions[slices.IndexFunc(st.Conditions, func(c metav1.Condition) bool { return c.Type == v1alpha1.ConditionSynced })]
	if synced.Status != metav1.ConditionFalse || synced.Reason != "RunHeldRetraction" {
		t.Fatalf("Synced after the held run: %+v", synced)
	}
	if n := claimed(); n != before {
		t.Fatalf("%d devices available in PostgreSQL after the held run, want %d: nothing retracted", n, before)
	}

	// The approval releases it.
	patch(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.ApproveRetractionAnnotation, run4.ID))
	test.Eventually(t, "the approved retraction released", time.Minute, func() bool {
		st = sys.status(src)
		return st.LastRun != nil && st.LastRun.ID == run4.ID && st.LastRun.Retraction != nil && st.LastRun.Retraction.State == v1alpha1.RetractionReleased
	})
	if st.LastRun.Counts.Retracted != int64(len(gone)) || st.LastRun.Result != v1alpha1.SyncResultSuccess || st.DevicesDiscovered != int64(len(present)) ||
		st.LastRun.Retraction.DecidedAt == nil {
		t.Fatalf("after the approval: %+v (retraction %+v), %d devices; want %d retracted, %d left", st.LastRun, st.LastRun.Retraction,
			st.DevicesDiscovered, len(gone), len(present))
	}
	if n := claimed(); n != len(present) {
		t.Fatalf("%d devices available in PostgreSQL after the approval, want %d", n, len(present))
	}

	// What a person sees: the columns, and the runs in kubectl describe.
	out, err := sys.env.Kubectl("get", "integrationsources", "-n", slug)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !slices.Equal(strings.Fields(lines[0])[:6], []string{"NAME", "TYPE", "SYNCSERVICE", "SYNCED", "DEVICES", "LAST"}) ||
		!slices.Equal(strings.Fields(lines[1])[:5], []string{"inventory", "netbox", controllers.PlatformSyncName, "Success", fmt.Sprint(len(present))}) {
		t.Fatalf("kubectl get integrationsources:\n%s", out)
	}
	out, err = sys.env.Kubectl("describe", "integrationsource", "-n", slug, "inventory")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"History:", "Last Run:", run4.ID, run3.ID, "Retraction:", "Released", "Unchanged:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("kubectl describe lacks %q:\n%s", want, out)
		}
	}
	t.Logf("kubectl describe integrationsource:\n%s", out)
	out, err = sys.env.Kubectl("get", "syncservices", "-n", operatorNS, controllers.PlatformSyncName)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !slices.Contains(strings.Fields(lines[0]), "WORKERS") ||
		!slices.Contains(strings.Fields(lines[1]), "1/1") {
		t.Fatalf("kubectl get syncservices:\n%s", out)
	}
}
