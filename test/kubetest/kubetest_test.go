package kubetest_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

func TestStartServesCRDsAndTenantNamespaces(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("control plane started in %s", env.StartupTime)
	if len(env.CRDs) != 3 {
		t.Fatalf("installed %d CRDs, want 3", len(env.CRDs))
	}
	ctx := context.Background()
	ns, err := env.TenantNamespace(ctx, "acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	got := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, got); err != nil {
		t.Fatal(err)
	}
	if got.Labels[v1alpha1.TenantLabel] != "acme" {
		t.Fatalf("namespace %s labels = %v", ns, got.Labels)
	}
	var list v1alpha1.IntegrationSourceList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing IntegrationSources: %v", err)
	}
	// A component started again (a benchmark restarting the gateway) gets
	// its user and roles again, and they still let it read.
	for range 2 {
		user, err := env.UserWithRoles(ctx, "gateway", "config/rbac/gateway/role.yaml")
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(user.Config(), client.Options{Scheme: env.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		var tenants v1alpha1.TenantList
		if err := c.List(ctx, &tenants); err != nil {
			t.Fatalf("listing Tenants as the gateway: %v", err)
		}
	}
}

// BenchmarkStart measures how long a control plane with the CRDs takes to
// start (`make bench`).
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		env, err := kubetest.Start()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := env.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
