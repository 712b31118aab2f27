package e2e_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/test/netboxemu"
)

// hourlyNetBoxSource is a NetBox source of namespace ns on the platform sync,
// polled once an hour (so that only spec changes and requests run it), of
// the active devices, without virtual machines, its token in Secret netbox.
func hourlyNetBoxSource(ns, url string) *v1alpha1.IntegrationSource {
	hour := &metav1.Duration{Duration: time.Hour}
	return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "inventory"}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationNetBox, Endpoint: url, CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"},
		SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName},
		PollInterval:   hour, DiscoveryInterval: hour, PageSize: 100,
		NetBox:  &v1alpha1.NetBoxSpec{ExcludeVirtualMachines: true},
		Queries: []v1alpha1.Query{{Label: "active", Query: "status=active"}}}}
}

// netboxTenant is the objects of tenant slug with the NetBox emulator's
// token, and src.
func netboxTenant(slug string, netbox *netboxemu.Server, src *v1alpha1.IntegrationSource) []client.Object {
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: slug, Labels: map[string]string{v1alpha1.TenantLabel: slug}}},
		&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "netbox"}, StringData: map[string]string{"api_token": netbox.V1Token()}},
		src,
	}
}

// activeAndPlanned are the emulator's active and planned device ids; it
// fails the test when there are fewer than minActive active or no planned.
func activeAndPlanned(t *testing.T, netbox *netboxemu.Server, minActive int) (active, planned []int) {
	t.Helper()
	active, err := netbox.MatchingDeviceIDs("status=active")
	if err != nil {
		t.Fatal(err)
	}
	if planned, err = netbox.MatchingDeviceIDs("status=planned"); err != nil {
		t.Fatal(err)
	}
	if len(active) < minActive || len(planned) == 0 {
		t.Fatalf("the emulator's inventory has %d active and %d planned devices: too few for this test", len(active), len(planned))
	}
	return active, planned
}
