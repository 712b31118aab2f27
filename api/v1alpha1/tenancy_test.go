package v1alpha1_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

func TestSyncServiceKeyDefaultsTheNamespace(t *testing.T) {
	for _, tc := range []struct {
		name string
		ref  v1alpha1.SyncServiceReference
		want types.NamespacedName
	}{
		{"own namespace", v1alpha1.SyncServiceReference{Name: "edge"}, types.NamespacedName{Namespace: "acme", Name: "edge"}},
		{"another namespace", v1alpha1.SyncServiceReference{Namespace: "platform-ns", Name: "platform-sync"},
			types.NamespacedName{Namespace: "platform-ns", Name: "platform-sync"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "armis"}, Spec: v1alpha1.IntegrationSourceSpec{SyncServiceRef: tc.ref}}
			if got := src.SyncServiceKey(); got != tc.want {
				t.Fatalf("SyncServiceKey() = %s, want %s", got, tc.want)
			}
		})
	}
}

// MayServe is the one rule of which SyncService serves which source: the
// manager's Ready conditions and worker Deployments and the gateway's
// bundles all ask it.
func TestMayServe(t *testing.T) {
	var (
		acme     = v1alpha1.NamespaceTenant{Slug: "acme"}
		globex   = v1alpha1.NamespaceTenant{Slug: "globex"}
		platform = v1alpha1.NamespaceTenant{Slug: "platform", Platform: true}
		none     = v1alpha1.NamespaceTenant{}
	)
	ss := func(ns, name string, platform bool, caps ...string) *v1alpha1.SyncService {
		return &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.SyncServiceSpec{Platform: platform, Capabilities: caps}}
	}
	src := func(ns string, typ v1alpha1.IntegrationType, ref v1alpha1.SyncServiceReference) *v1alpha1.IntegrationSource {
		return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "src"},
			Spec: v1alpha1.IntegrationSourceSpec{Type: typ, SyncServiceRef: ref}}
	}
	own := v1alpha1.SyncServiceReference{Name: "edge"}
	shared := v1alpha1.SyncServiceReference{Namespace: "ops", Name: "platform-sync"}
	for _, tc := range []struct {
		name                string
		ss                  *v1alpha1.SyncService
		src                 *v1alpha1.IntegrationSource
		ssTenant, srcTenant v1alpha1.NamespaceTenant
		want                string // the refusal's reason; "" when it may serve
	}{
		{"same tenant, same namespace", ss("acme", "edge", false), src("acme", v1alpha1.IntegrationArmis, own), acme, acme, ""},
		{"same tenant, another of its namespaces", ss("acme-2", "edge", false),
			src("acme", v1alpha1.IntegrationArmis, v1alpha1.SyncServiceReference{Namespace: "acme-2", Name: "edge"}), acme, acme, ""},
		{"another tenant's SyncService", ss("globex", "edge", false),
			src("acme", v1alpha1.IntegrationArmis, v1alpha1.SyncServiceReference{Namespace: "globex", Name: "edge"}), globex, acme,
			v1alpha1.ReasonSyncServiceNotFound},
		{"platform SyncService in the platform tenant", ss("ops", "platform-sync", true), src("acme", v1alpha1.IntegrationFaker, shared),
			platform, acme, ""},
		{"platform SyncService serves the platform tenant too", ss("ops", "platform-sync", true), src("ops", v1alpha1.IntegrationFaker, shared),
			platform, platform, ""},
		{"platform SyncService outside the platform tenant", ss("ops", "platform-sync", true), src("acme", v1alpha1.IntegrationFaker, shared),
			globex, acme, v1alpha1.ReasonSyncServiceNotFound},
		{"a platform tenant's SyncService that is not a platform one", ss("ops", "platform-sync", false), src("acme", v1alpha1.IntegrationFaker, shared),
			platform, acme, v1alpha1.ReasonSyncServiceNotFound},
		{"SyncService in a namespace of no tenant", ss("acme", "edge", false), src("acme", v1alpha1.IntegrationArmis, own), none, acme,
			v1alpha1.ReasonSyncServiceNotFound},
		{"source in a namespace of no tenant", ss("acme", "edge", false), src("acme", v1alpha1.IntegrationArmis, own), acme, none,
			v1alpha1.ReasonTenantNotFound},
		{"source names another SyncService", ss("acme", "edge", false), src("acme", v1alpha1.IntegrationArmis, v1alpha1.SyncServiceReference{Name: "other"}),
			acme, acme, v1alpha1.ReasonSyncServiceNotFound},
		{"capability present", ss("acme", "edge", false, "armis", "netbox"), src("acme", v1alpha1.IntegrationNetBox, own), acme, acme, ""},
		{"capability missing", ss("acme", "edge", false, "netbox"), src("acme", v1alpha1.IntegrationArmis, own), acme, acme,
			v1alpha1.ReasonSyncServiceNotAllowed},
		{"capability missing on a platform SyncService", ss("ops", "platform-sync", true, "faker"), src("acme", v1alpha1.IntegrationArmis, shared),
			platform, acme, v1alpha1.ReasonSyncServiceNotAllowed},
		{"another tenant's SyncService is refused before its capabilities show", ss("globex", "edge", false, "netbox"),
			src("acme", v1alpha1.IntegrationArmis, v1alpha1.SyncServiceReference{Namespace: "globex", Name: "edge"}), globex, acme,
			v1alpha1.ReasonSyncServiceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := v1alpha1.MayServe(tc.ss, tc.src, tc.ssTenant, tc.srcTenant)
			reason := ""
			if got != nil {
				reason = got.Reason
				if got.Message == "" {
					t.Fatalf("refusal %s has no message", got.Reason)
				}
			}
			if reason != tc.want {
				t.Fatalf("MayServe = %v, want reason %q", got, tc.want)
			}
			// The tenant-level rule agrees wherever the source's own part
			// (its tenant, its reference, its type) is in order.
			if tc.want == "" || tc.want == v1alpha1.ReasonSyncServiceNotFound && tc.src.SyncServiceKey().Name == tc.ss.Name {
				if tenantOK := v1alpha1.MayServeTenant(tc.ss, tc.ssTenant, tc.srcTenant.Slug) == nil; tenantOK != (tc.want == "") {
					t.Fatalf("MayServeTenant = %v, MayServe = %v", tenantOK, got)
				}
			}
		})
	}
}

// A SyncService that does not exist and one the tenant may not use read
// the same, so that a source cannot probe other tenants' namespaces.
func TestAnUnusableSyncServiceReadsAsAMissingOne(t *testing.T) {
	globexSS := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: "globex", Name: "edge"}}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "src"},
		Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationArmis, SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: "globex", Name: "edge"}}}
	got := v1alpha1.MayServe(globexSS, src, v1alpha1.NamespaceTenant{Slug: "globex"}, v1alpha1.NamespaceTenant{Slug: "acme"})
	missing := v1alpha1.SyncServiceUnusable(src.SyncServiceKey(), "acme")
	if got == nil || *got != *missing {
		t.Fatalf("MayServe = %v, a missing SyncService reads %v", got, missing)
	}
}

// TestSlugTenant checks the gateway's reading of a namespace's tenant
// label: only the configured platform slug is the platform tenant.
func TestSlugTenant(t *testing.T) {
	for _, tc := range []struct {
		slug, platform string
		want           v1alpha1.NamespaceTenant
	}{
		{"acme", "platform", v1alpha1.NamespaceTenant{Slug: "acme"}},
		{"platform", "platform", v1alpha1.NamespaceTenant{Slug: "platform", Platform: true}},
		{"", "", v1alpha1.NamespaceTenant{}},
		{"", "platform", v1alpha1.NamespaceTenant{}},
	} {
		if got := v1alpha1.SlugTenant(tc.slug, tc.platform); got != tc.want {
			t.Errorf("SlugTenant(%q, %q) = %+v, want %+v", tc.slug, tc.platform, got, tc.want)
		}
	}
}
