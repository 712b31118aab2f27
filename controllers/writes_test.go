package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
)

// TestSteadyStateMakesNoWrites runs last: after everything above converged, a
// running manager and a restarted one must not write at all.
func TestSteadyStateMakesNoWrites(t *testing.T) {
	m := startManager(t, opts)
	ns := tenantNamespace(t, "acme")
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "settle", Namespace: ns},
		Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}}}
	mustCreate(t, src)
	sourceReady(t, src, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	// The new namespace is written to acme's status; on a loaded machine the
	// manager's rate-limited queues can take seconds to get there.
	acme := &v1alpha1.Tenant{}
	waitFor(t, "acme's status listing "+ns, func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: "acme"}, acme); err != nil {
			return err
		}
		if !slices.Contains(acme.Status.Namespaces, ns) {
			return fmt.Errorf("namespaces %v", acme.Status.Namespaces)
		}
		return nil
	})
	settled(t, m)
	if len(m.writes.list()) == 0 {
		t.Fatal("the write counter saw no writes while the source converged; it counts nothing")
	}
	m.writes.reset()
	time.Sleep(5 * time.Second)
	if w := m.writes.list(); len(w) != 0 {
		t.Fatalf("steady state made %d writes: %v", len(w), w)
	}
	m.stop()

	restarted := startManager(t, opts)
	time.Sleep(8 * time.Second) // caches sync and every object is reconciled once; none may write
	if w := restarted.writes.list(); len(w) != 0 {
		t.Fatalf("a restarted manager made %d writes: %v", len(w), w)
	}
}

// settled waits until the manager has made no write for four seconds: the
// last status writes of the objects above and their watch events are done
// (the manager's queues are rate limited, so a loaded machine can leave
// seconds between two writes of one convergence).
func settled(t *testing.T, m *manager) {
	t.Helper()
	last, quiet := len(m.writes.list()), time.Now()
	deadline := time.Now().Add(time.Minute)
	for time.Since(quiet) < 4*time.Second {
		if time.Now().After(deadline) {
			t.Fatalf("the manager kept writing for a minute: %v", m.writes.list())
		}
		time.Sleep(200 * time.Millisecond)
		if n := len(m.writes.list()); n != last {
			last, quiet = n, time.Now()
		}
	}
}
