package catalog

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

func TestUnchangedIgnoresOnlyUpdatesThatCannotChangeABundle(t *testing.T) {
	now := metav1.Now()
	src := func(gen int64, labels map[string]string, deleting bool) client.Object {
		s := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Generation: gen, Labels: labels}}
		if deleting {
			s.DeletionTimestamp = &now
		}
		return s
	}
	secret := func(rv string) client.Object {
		m := secretMeta()
		m.ResourceVersion = rv
		return m
	}
	ns := func(labels map[string]string) client.Object {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Labels: labels, ResourceVersion: "1"}}
	}
	for _, tc := range []struct {
		name     string
		old, new client.Object
		want     bool
	}{
		{"status write", src(3, nil, false), src(3, nil, false), true},
		{"spec edit", src(3, nil, false), src(4, nil, false), false},
		{"deletion starts", src(3, nil, false), src(3, nil, true), false},
		{"label edit", src(3, nil, false), src(3, map[string]string{"a": "b"}, false), false},
		{"secret resync", secret("7"), secret("7"), true},
		{"secret data edit", secret("7"), secret("8"), false},
		{"namespace annotation", ns(map[string]string{v1alpha1.TenantLabel: "acme"}), ns(map[string]string{v1alpha1.TenantLabel: "acme"}), true},
		{"namespace moves tenant", ns(map[string]string{v1alpha1.TenantLabel: "acme"}), ns(map[string]string{v1alpha1.TenantLabel: "globex"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unchanged(tc.old, tc.new); got != tc.want {
				t.Fatalf("unchanged = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInvalidationWakesOnlyItsTenant(t *testing.T) {
	c := New(nil, nil, "platform")
	acme, globex := c.Changed("acme"), c.Changed("globex")
	c.invalidateSlug("acme")
	select {
	case <-acme:
	default:
		t.Fatal("acme's waiters were not woken")
	}
	select {
	case <-globex:
		t.Fatal("globex's waiters were woken by acme's change")
	default:
	}
	c.invalidateSlug("") // an object outside tenant namespaces
	select {
	case <-globex:
		t.Fatal("an object outside tenant namespaces woke globex")
	default:
	}
	c.invalidateSlug("platform") // shared SyncServices live there
	select {
	case <-globex:
	default:
		t.Fatal("a platform change did not wake globex")
	}
}
