package statusapply_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/statusapply"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = kubetest.Start(); err != nil {
		panic(err)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		panic(err)
	}
	os.Exit(code)
}

// owned lists the top-level status fields each field manager owns.
func owned(t *testing.T, obj client.Object) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, mf := range obj.GetManagedFields() {
		if mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]map[string]any
		if err := json.Unmarshal(mf.FieldsV1.GetRawBytes(), &fields); err != nil {
			t.Fatal(err)
		}
		for top, sub := range fields {
			if top != "f:status" {
				out[mf.Manager] = append(out[mf.Manager], top)
				continue
			}
			for f := range sub {
				out[mf.Manager] = append(out[mf.Manager], strings.TrimPrefix(f, "f:"))
			}
		}
		slices.Sort(out[mf.Manager])
	}
	return out
}

// Two writers apply typed statuses of one object: each owns exactly the
// fields it sets, neither removes the other's, a field one stops setting
// is removed, WithZero keeps a zero field owned, and a resourceVersion
// given is a precondition.
func TestWritersOwnTheFieldsTheySet(t *testing.T) {
	ctx := context.Background()
	ns, err := env.TenantNamespace(ctx, "statusapply", "acme")
	if err != nil {
		t.Fatal(err)
	}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "faker"},
		Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, SyncServiceRef: v1alpha1.SyncServiceReference{Name: "sync"}}}
	if err := env.Client.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(src)
	meta0 := metav1.ObjectMeta{Namespace: ns, Name: "faker"}
	const manager, gateway = "test-manager", "test-gateway"
	ready := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconciled, Message: "ok",
		LastTransitionTime: metav1.Now().Rfc3339Copy()}
	synced := metav1.Condition{Type: v1alpha1.ConditionSynced, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonRunFailed, Message: "boom",
		LastTransitionTime: metav1.Now().Rfc3339Copy()}
	apply := func(owner string, st v1alpha1.IntegrationSourceStatus, opts ...statusapply.Option) {
		t.Helper()
		if err := statusapply.Apply(ctx, env.Client, owner, &v1alpha1.IntegrationSource{ObjectMeta: meta0, Status: st}, opts...); err != nil {
			t.Fatal(err)
		}
	}
	get := func() (*v1alpha1.IntegrationSource, map[string]any) {
		t.Helper()
		got := &v1alpha1.IntegrationSource{}
		if err := env.Client.Get(ctx, key, got); err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("IntegrationSource"))
		if err := env.Client.Get(ctx, key, u); err != nil {
			t.Fatal(err)
		}
		raw, _, _ := unstructured.NestedMap(u.Object, "status")
		return got, raw
	}

	apply(manager, v1alpha1.IntegrationSourceStatus{ObservedGeneration: 1, AssignedWorker: "w", Conditions: []metav1.Condition{ready}})
	apply(gateway, v1alpha1.IntegrationSourceStatus{LastSyncResult: v1alpha1.SyncResultFailed, DevicesDiscovered: 5, LastError: "boom",
		Conditions: []metav1.Condition{synced}})
	got, _ := get()
	if got.Status.AssignedWorker != "w" || got.Status.DevicesDiscovered != 5 || got.Status.LastError != "boom" || len(got.Status.Conditions) != 2 {
		t.Fatalf("status after both writers: %+v", got.Status)
	}
	own := owned(t, got)
	if g := strings.Join(own[manager], ","); g != "assignedWorker,conditions,observedGeneration" {
		t.Fatalf("the manager owns %s", g)
	}
	if g := strings.Join(own[gateway], ","); g != "conditions,devicesDiscovered,lastError,lastSyncResult" {
		t.Fatalf("the gateway owns %s", g)
	}

	// Zero fields kept with WithZero: recorded as 0 and "", still the gateway's.
	apply(gateway, v1alpha1.IntegrationSourceStatus{LastSyncResult: v1alpha1.SyncResultSuccess, Conditions: []metav1.Condition{synced}},
		statusapply.WithZero("devicesDiscovered", "lastError"))
	got, raw := get()
	if raw["devicesDiscovered"] != int64(0) || raw["lastError"] != "" {
		t.Fatalf("zero fields not recorded: %v", raw)
	}
	if g := strings.Join(owned(t, got)[gateway], ","); g != "conditions,devicesDiscovered,lastError,lastSyncResult" {
		t.Fatalf("with zero fields the gateway owns %s", g)
	}
	// Without: no longer sent, so removed; the manager's fields stay.
	apply(gateway, v1alpha1.IntegrationSourceStatus{LastSyncResult: v1alpha1.SyncResultSuccess, Conditions: []metav1.Condition{synced}})
	got, raw = get()
	if _, ok := raw["devicesDiscovered"]; ok {
		t.Fatalf("devicesDiscovered was kept after its writer stopped setting it: %v", raw)
	}
	if got.Status.AssignedWorker != "w" || got.Status.ObservedGeneration != 1 || meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady) == nil {
		t.Fatalf("the gateway's apply removed the manager's fields: %+v", got.Status)
	}

	// A stale resourceVersion is refused.
	stale := got.ResourceVersion
	apply(manager, v1alpha1.IntegrationSourceStatus{ObservedGeneration: 1, AssignedWorker: "w2", Conditions: []metav1.Condition{ready}})
	err = statusapply.Apply(ctx, env.Client, manager, &v1alpha1.IntegrationSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "faker", ResourceVersion: stale},
		Status:     v1alpha1.IntegrationSourceStatus{ObservedGeneration: 1, AssignedWorker: "stale", Conditions: []metav1.Condition{ready}}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("an apply onto a stale resourceVersion: %v, want a Conflict", err)
	}
	if got, _ := get(); got.Status.AssignedWorker != "w2" {
		t.Fatalf("a refused apply changed the status: %+v", got.Status)
	}

	// A zero field that is not a scalar cannot be named.
	if err := statusapply.Apply(ctx, env.Client, gateway, &v1alpha1.IntegrationSource{ObjectMeta: meta0},
		statusapply.WithZero("history")); err == nil || !strings.Contains(err.Error(), "history") {
		t.Fatalf("WithZero of a list: %v", err)
	}
}
