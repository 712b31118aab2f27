package bundle_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/bundle"
	wire "github.com/serviceradar/sync-operator/wire/bundle"
)

func ss(ns, name string, typ v1alpha1.ServiceType, platform bool, caps ...string) v1alpha1.SyncService {
	return v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: typ, Platform: platform, Capabilities: caps, Partition: "default"}}
}

func src(ns, name string, typ v1alpha1.IntegrationType, refNS, refName, secret string) v1alpha1.IntegrationSource {
	s := v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: v1alpha1.IntegrationSourceSpec{Type: typ, SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: refNS, Name: refName},
			Partition: "default", PageSize: 100, PollInterval: &metav1.Duration{Duration: 5 * time.Minute}}}
	if typ != v1alpha1.IntegrationFaker {
		s.Spec.Endpoint = "https://" + ns + "-" + name + ".example"
		s.Spec.CredentialsSecretRef = &v1alpha1.SecretReference{Name: secret}
	}
	return s
}

func world() bundle.Inputs {
	secrets := map[string]*corev1.Secret{
		"acme/armis":   {Data: map[string][]byte{"secret_key": []byte("acme-armis-secret"), "unrelated": []byte("acme-other-secret")}},
		"acme/netbox":  {Data: map[string][]byte{"api_token": []byte("acme-netbox-token")}},
		"globex/armis": {Data: map[string][]byte{"secret_key": []byte("globex-armis-secret")}},
		"acme/wrong":   {Data: map[string][]byte{"api_token": []byte("not-for-armis")}},
	}
	return bundle.Inputs{
		TenantID:        "11111111-1111-5111-8111-111111111111",
		NamespaceTenant: map[string]string{"serviceradar-system": "platform", "acme": "acme", "acme-2": "acme", "globex": "globex"},
		SyncServices: []v1alpha1.SyncService{
			ss("serviceradar-system", "platform-sync", v1alpha1.ServiceTypeSaaS, true),
			ss("acme", "edge", v1alpha1.ServiceTypeOnPrem, false),
			ss("acme", "fake-platform", v1alpha1.ServiceTypeSaaS, true),
			ss("acme", "netbox-only", v1alpha1.ServiceTypeSaaS, false, "netbox"),
			// The attack of issue 14: acme's own SaaS SyncService named like
			// the platform one.
			ss("acme", "platform-sync", v1alpha1.ServiceTypeSaaS, false),
		},
		Sources: []v1alpha1.IntegrationSource{
			src("acme", "armis", v1alpha1.IntegrationArmis, "serviceradar-system", "platform-sync", "armis"),
			src("acme-2", "lab", v1alpha1.IntegrationFaker, "serviceradar-system", "platform-sync", ""),
			src("acme", "netbox", v1alpha1.IntegrationNetBox, "", "edge", "netbox"),
			src("acme", "no-secret", v1alpha1.IntegrationArmis, "serviceradar-system", "platform-sync", "missing"),
			src("acme", "wrong-key", v1alpha1.IntegrationArmis, "serviceradar-system", "platform-sync", "wrong"),
			src("acme", "armis-on-netbox-only", v1alpha1.IntegrationArmis, "", "netbox-only", "armis"),
			src("globex", "armis", v1alpha1.IntegrationArmis, "serviceradar-system", "platform-sync", "armis"),
			src("globex", "via-acme-edge", v1alpha1.IntegrationFaker, "acme", "edge", ""),
			src("globex", "via-fake-platform", v1alpha1.IntegrationFaker, "acme", "fake-platform", ""),
		},
		Secret: func(ns, name string) *corev1.Secret { return secrets[ns+"/"+name] },
	}
}

// componentOf is the component id of the world's SyncService ns/name for a tenant.
func componentOf(t *testing.T, ns, name, tenant string) string {
	t.Helper()
	for _, s := range world().SyncServices {
		if s.Namespace == ns && s.Name == name {
			return v1alpha1.ComponentID(&s, tenant)
		}
	}
	t.Fatalf("no SyncService %s/%s", ns, name)
	return ""
}

func TestSelection(t *testing.T) {
	acmeOwn := componentOf(t, "acme", "platform-sync", "acme")
	if acmeOwn == "platform-sync-acme" {
		t.Fatalf("acme's SyncService named like the platform one has the platform worker's component id %q", acmeOwn)
	}
	cases := []struct {
		name      string
		tenant    string
		component string
		edge      bool   // the caller has an edge certificate (CN), not an SVID
		wantSS    string // "" means no SyncService matches: the caller is not enrolled
		want      []string
	}{
		{"platform worker of acme", "acme", "platform-sync-acme", false, "serviceradar-system/platform-sync", []string{"acme-2/lab", "acme/armis"}},
		{"platform worker of globex", "globex", "platform-sync-globex", false, "serviceradar-system/platform-sync", []string{"globex/armis"}},
		{"acme's edge worker", "acme", "edge", true, "acme/edge", []string{"acme/netbox"}},
		{"acme's component id claimed by globex", "globex", "platform-sync-acme", false, "", nil},
		{"acme's edge claimed by globex", "globex", "edge", true, "", nil},
		{"acme's edge id on an SVID", "acme", "edge", false, "", nil},
		{"the platform worker's id on an edge certificate", "acme", "platform-sync-acme", true, "", nil},
		{"a platform claim outside the platform tenant", "globex", "fake-platform-globex", false, "", nil},
		{"capabilities filter sources", "acme", componentOf(t, "acme", "netbox-only", "acme"), false, "acme/netbox-only", []string{}},
		{"acme's SyncService named like the platform one", "acme", acmeOwn, false, "acme/platform-sync", []string{}},
		{"unknown component", "acme", "nobody", false, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := world()
			in.TenantSlug, in.ComponentID, in.Partition, in.Edge = tc.tenant, tc.component, "default", tc.edge
			got, err := bundle.SyncServiceFor(in, "platform")
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantSS == "" {
				if got != nil {
					t.Fatalf("matched SyncService %s/%s", got.Namespace, got.Name)
				}
				return
			}
			if got == nil || got.Namespace+"/"+got.Name != tc.wantSS {
				t.Fatalf("SyncService %v, want %s", got, tc.wantSS)
			}
			b := bundle.BuildSync(in, got, "platform")
			keys := make([]string, 0, len(b.Sources))
			for k := range b.Sources {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tc.want) && (len(keys) != 0 || len(tc.want) != 0) {
				t.Fatalf("sources %v, want %v", keys, tc.want)
			}
			if b.TenantSlug != tc.tenant || b.AgentID != tc.component || b.Scope != wire.ScopeTenant {
				t.Fatalf("bundle header %+v", b)
			}
			raw, _, err := wire.Encode(b)
			if err != nil {
				t.Fatal(err)
			}
			other := map[string]string{"acme": "globex", "globex": "acme"}[tc.tenant]
			for _, leak := range []string{other + "-armis-secret", other + "-", `"` + other + `/`} {
				if bytes.Contains(raw, []byte(leak)) {
					t.Fatalf("bundle of %s carries %q of %s: %s", tc.tenant, leak, other, raw)
				}
			}
		})
	}
}

func TestCredentialsCarryOnlyTheNeededKey(t *testing.T) {
	in := world()
	in.TenantSlug, in.ComponentID, in.Partition = "acme", "platform-sync-acme", "default"
	platformSync, err := bundle.SyncServiceFor(in, "platform")
	if err != nil || platformSync == nil {
		t.Fatalf("SyncServiceFor = %v, %v", platformSync, err)
	}
	b := bundle.BuildSync(in, platformSync, "platform")
	creds := b.Sources["acme/armis"].Credentials
	if len(creds) != 1 || creds["secret_key"] != "acme-armis-secret" {
		t.Fatalf("credentials %v", creds)
	}
	raw, _, _ := wire.Encode(b.Redacted())
	if bytes.Contains(raw, []byte("acme-armis-secret")) || !bytes.Contains(raw, []byte("[redacted]")) {
		t.Fatalf("redacted bundle: %s", raw)
	}
	if s := b.Sources["acme/armis"]; s.SyncServiceID != "uid-serviceradar-system-platform-sync" || s.IntegrationSourceUID != "uid-acme-armis" || s.PollIntervalSec != 300 {
		t.Fatalf("source %+v", s)
	}
}

func TestEncodeIsCanonicalAndVersioned(t *testing.T) {
	in := world()
	in.TenantSlug, in.ComponentID, in.Partition = "acme", "platform-sync-acme", "default"
	ssPtr, err := bundle.SyncServiceFor(in, "platform")
	if err != nil || ssPtr == nil {
		t.Fatalf("SyncServiceFor = %v, %v", ssPtr, err)
	}
	a := bundle.BuildSync(in, ssPtr, "platform")
	// The same content built from objects listed in another order.
	slices.Reverse(in.Sources)
	b := bundle.BuildSync(in, ssPtr, "platform")
	rawA, verA, err := wire.Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	rawB, verB, _ := wire.Encode(b)
	if !bytes.Equal(rawA, rawB) || verA != verB {
		t.Fatalf("same content, different encodings:\n%s\n%s", rawA, rawB)
	}
	var generic map[string]any
	if err := json.Unmarshal(rawA, &generic); err != nil {
		t.Fatal(err)
	}
	// Canonical: re-encoding the parsed document (sorted keys, no spaces) gives the same bytes.
	again, _ := json.Marshal(generic)
	if !bytes.Equal(again, rawA) || !strings.HasPrefix(string(rawA), `{"agent_id":`) {
		t.Fatalf("not canonical: %s", rawA)
	}
	// Any change, a credential included, changes the version.
	a.Sources["acme/armis"] = func(s wire.Source) wire.Source {
		s.Credentials = map[string]string{"secret_key": "rotated"}
		return s
	}(a.Sources["acme/armis"])
	if _, verC, _ := wire.Encode(a); verC == verA {
		t.Fatal("a rotated credential kept the version")
	}
}

// An identity that two SyncServices answer to is refused, whichever way the
// two came about: the gateway never serves one of them by chance.
func TestAmbiguousIdentityIsRefused(t *testing.T) {
	twin := ss("serviceradar-system", "platform-sync", v1alpha1.ServiceTypeSaaS, true)
	twin.UID = "uid-twin"
	otherPlatformNS := ss("serviceradar-system-2", "platform-sync", v1alpha1.ServiceTypeSaaS, true)
	cases := []struct {
		name      string
		add       []v1alpha1.SyncService
		nsTenant  map[string]string
		component string
		edge      bool
	}{
		{"two objects with one component id (forced)", []v1alpha1.SyncService{twin}, nil, "platform-sync-acme", false},
		{"platform SyncServices of one name in two platform namespaces", []v1alpha1.SyncService{otherPlatformNS},
			map[string]string{"serviceradar-system-2": "platform"}, "platform-sync-acme", false},
		{"OnPrem SyncServices of one name and partition in two namespaces of the tenant",
			[]v1alpha1.SyncService{ss("acme-2", "edge", v1alpha1.ServiceTypeOnPrem, false)}, nil, "edge", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := world()
			in.SyncServices = append(in.SyncServices, tc.add...)
			for ns, slug := range tc.nsTenant {
				in.NamespaceTenant[ns] = slug
			}
			in.TenantSlug, in.ComponentID, in.Partition, in.Edge = "acme", tc.component, "default", tc.edge
			got, err := bundle.SyncServiceFor(in, "platform")
			if !errors.Is(err, bundle.ErrAmbiguous) || got != nil {
				t.Fatalf("SyncServiceFor = %v, %v; want ErrAmbiguous", got, err)
			}
		})
	}
}
