package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/platform"
)

var opts = controllers.Options{Namespace: operatorNS, PlatformSlug: "platform", PlatformSync: true, GatewayServiceAccount: "sync-gateway",
	EdgeGatewayAddress: edgeGatewayAddress}

// edgeGatewayAddress is where the tests' edge workers would reach the gateway.
const edgeGatewayAddress = "sync.platform.example:443"

func platformID(t *testing.T) uuid.UUID {
	t.Helper()
	sec := &corev1.Secret{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: operatorNS, Name: platform.IdentitySecret}, sec); err != nil {
		t.Fatal(err)
	}
	id, err := uuid.ParseBytes(sec.Data[platform.TenantIDKey])
	if err != nil || id == uuid.Nil {
		t.Fatalf("persisted platform UUID %q: %v", sec.Data[platform.TenantIDKey], err)
	}
	return id
}

func tenantReady(t *testing.T, tn *v1alpha1.Tenant, status metav1.ConditionStatus, reason string) {
	t.Helper()
	waitFor(t, "tenant "+tn.Name+" "+reason, readyIs(tn, func() []metav1.Condition { return tn.Status.Conditions },
		func() int64 { return tn.Generation }, status, reason))
}

func TestPlatformBootstrapAndTenants(t *testing.T) {
	ctx := context.Background()
	startManager(t, opts)

	plat := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "platform"}}
	tenantReady(t, plat, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	pid := platformID(t)
	if plat.Status.TenantID != pid.String() {
		t.Fatalf("platform tenantID %q, persisted %q", plat.Status.TenantID, pid)
	}
	ss := &v1alpha1.SyncService{}
	waitFor(t, "the platform SyncService", getObj(env.Client, ss, operatorNS, controllers.PlatformSyncName))
	if !ss.Spec.Platform || ss.Spec.ServiceType != v1alpha1.ServiceTypeSaaS {
		t.Fatalf("platform SyncService spec %+v", ss.Spec)
	}

	ns := tenantNamespace(t, "acme")
	acme := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}
	mustCreate(t, acme)
	tenantReady(t, acme, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	if want := uuid.NewSHA1(pid, []byte("acme")).String(); acme.Status.TenantID != want {
		t.Fatalf("acme tenantID %q, want UUIDv5(platform, acme) %q", acme.Status.TenantID, want)
	}
	if len(acme.Status.Namespaces) != 1 || acme.Status.Namespaces[0] != ns {
		t.Fatalf("acme namespaces %v, want [%s]", acme.Status.Namespaces, ns)
	}
	caSecret := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: platform.TenantCASecretPrefix + "acme"}, caSecret); err != nil {
		t.Fatal(err)
	}
	certs, err := ca.ParseCertificatesPEM(caSecret.Data[corev1.TLSCertKey])
	if err != nil || certs[0].Subject.CommonName != "tenant-acme.ca.serviceradar" {
		t.Fatalf("tenant CA: %v %v", certs, err)
	}

	t.Run("tenant ID survives delete and re-create", func(t *testing.T) {
		before := acme.Status.TenantID
		if err := env.Client.Delete(ctx, acme); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "acme deleted", func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(acme), &v1alpha1.Tenant{}); err == nil {
				return errors.New("still there")
			}
			return nil
		})
		again := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}
		mustCreate(t, again)
		tenantReady(t, again, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
		if again.Status.TenantID != before {
			t.Fatalf("tenant ID changed from %s to %s", before, again.Status.TenantID)
		}
	})

	t.Run("a second platform tenant is refused", func(t *testing.T) {
		second := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "platform-2"}, Spec: v1alpha1.TenantSpec{Slug: "platform", Platform: true}}
		mustCreate(t, second)
		tenantReady(t, second, metav1.ConditionFalse, v1alpha1.ReasonDuplicatePlatformTenant)
		if second.Status.TenantID != "" {
			t.Fatalf("duplicate platform tenant got tenant ID %s", second.Status.TenantID)
		}
		tenantReady(t, plat, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	})

	t.Run("a platform tenant with another slug is refused", func(t *testing.T) {
		other := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "ops"}, Spec: v1alpha1.TenantSpec{Slug: "ops", Platform: true}}
		mustCreate(t, other)
		tenantReady(t, other, metav1.ConditionFalse, v1alpha1.ReasonReservedSlug)
	})

	t.Run("a namespace joining a tenant shows in its status", func(t *testing.T) {
		ns2 := tenantNamespace(t, "acme")
		waitFor(t, "acme lists "+ns2, func() error {
			got := &v1alpha1.Tenant{}
			if err := env.Client.Get(ctx, client.ObjectKey{Name: "acme"}, got); err != nil {
				return err
			}
			for _, n := range got.Status.Namespaces {
				if n == ns2 {
					return nil
				}
			}
			return errors.New("not yet")
		})
	})
}

func TestNilPlatformUUIDIsRefused(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "nil-uuid-"}}
	mustCreate(t, ns)
	mustCreate(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: platform.IdentitySecret, Namespace: ns.Name},
		Data:       map[string][]byte{platform.TenantIDKey: []byte(uuid.Nil.String())},
	})
	store := &platform.Store{Client: env.Client, Reader: env.Client, Namespace: ns.Name}
	if _, err := store.PlatformTenantID(ctx); !errors.Is(err, platform.ErrNilPlatformUUID) {
		t.Fatalf("nil UUID: err = %v", err)
	}
	sec := &corev1.Secret{}
	_ = env.Client.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: platform.IdentitySecret}, sec)
	if string(sec.Data[platform.TenantIDKey]) != uuid.Nil.String() {
		t.Fatal("the stored value was replaced")
	}
}

func sourceReady(t *testing.T, src *v1alpha1.IntegrationSource, status metav1.ConditionStatus, reason string) {
	t.Helper()
	waitFor(t, "source "+src.Name+" "+reason, readyIs(src, func() []metav1.Condition { return src.Status.Conditions },
		func() int64 { return src.Generation }, status, reason))
}

func TestIntegrationSourceReadiness(t *testing.T) {
	ctx := context.Background()
	startManager(t, opts)
	for _, slug := range []string{"acme", "globex"} {
		mustCreate(t, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}})
	}
	acmeNS, globexNS := tenantNamespace(t, "acme"), tenantNamespace(t, "globex")
	unlabeled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "nobody-"}}
	mustCreate(t, unlabeled)
	mustCreate(t,
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: acmeNS}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}},
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: globexNS}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}},
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "netbox-only", Namespace: acmeNS}, Spec: v1alpha1.SyncServiceSpec{Capabilities: []string{"netbox"}}},
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "fake-platform", Namespace: acmeNS}, Spec: v1alpha1.SyncServiceSpec{Platform: true}},
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "stray", Namespace: unlabeled.Name}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "armis-ok", Namespace: acmeNS}, Data: map[string][]byte{"secret_key": []byte("s3cr3t-value")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wrong-key", Namespace: acmeNS}, Data: map[string][]byte{"api_token": []byte("s3cr3t-value")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "armis-ok", Namespace: globexNS}, Data: map[string][]byte{"secret_key": []byte("s3cr3t-value")}},
	)
	armis := func(name, ns, secret string, ref v1alpha1.SyncServiceReference) *v1alpha1.IntegrationSource {
		return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationArmis, Endpoint: "https://armis.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: secret},
			SyncServiceRef: ref, Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}},
		}}
	}
	platformSync := v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}
	cases := []struct {
		name   string
		src    *v1alpha1.IntegrationSource
		status metav1.ConditionStatus
		reason string
		worker string
	}{
		{"served by the platform sync", armis("ok", acmeNS, "armis-ok", platformSync), metav1.ConditionTrue, v1alpha1.ReasonReconciled, "platform-sync-acme"},
		{"served by its own tenant's on-prem sync", armis("own", acmeNS, "armis-ok", v1alpha1.SyncServiceReference{Name: "edge"}), metav1.ConditionTrue, v1alpha1.ReasonReconciled, "edge"},
		{"namespace without tenant", armis("no-tenant", unlabeled.Name, "armis-ok", platformSync), metav1.ConditionFalse, v1alpha1.ReasonTenantNotFound, ""},
		{"missing Secret", armis("no-secret", acmeNS, "missing", platformSync), metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound, ""},
		{"Secret without the armis key", armis("wrong-key", acmeNS, "wrong-key", platformSync), metav1.ConditionFalse, v1alpha1.ReasonSecretInvalid, ""},
		{"missing SyncService", armis("no-ss", acmeNS, "armis-ok", v1alpha1.SyncServiceReference{Name: "nope"}), metav1.ConditionFalse, v1alpha1.ReasonSyncServiceNotFound, ""},
		{"another tenant's SyncService", armis("cross", acmeNS, "armis-ok", v1alpha1.SyncServiceReference{Namespace: globexNS, Name: "edge"}), metav1.ConditionFalse, v1alpha1.ReasonSyncServiceNotFound, ""},
		{"SyncService without the capability", armis("capability", acmeNS, "armis-ok", v1alpha1.SyncServiceReference{Name: "netbox-only"}), metav1.ConditionFalse, v1alpha1.ReasonSyncServiceNotAllowed, ""},
		{"platform claim outside the platform tenant", armis("fake-platform", globexNS, "armis-ok", v1alpha1.SyncServiceReference{Namespace: acmeNS, Name: "fake-platform"}), metav1.ConditionFalse, v1alpha1.ReasonSyncServiceNotFound, ""},
		{"a SyncService in a namespace of no tenant", armis("no-tenant-ss", acmeNS, "armis-ok", v1alpha1.SyncServiceReference{Namespace: unlabeled.Name, Name: "stray"}), metav1.ConditionFalse, v1alpha1.ReasonSyncServiceNotFound, ""},
		{"faker needs no Secret", &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "faker", Namespace: acmeNS}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationFaker, SyncServiceRef: platformSync}}, metav1.ConditionTrue, v1alpha1.ReasonReconciled, "platform-sync-acme"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustCreate(t, tc.src)
			sourceReady(t, tc.src, tc.status, tc.reason)
			if tc.src.Status.AssignedWorker != tc.worker {
				t.Fatalf("assignedWorker %q, want %q", tc.src.Status.AssignedWorker, tc.worker)
			}
			c := tc.src.Status.Conditions[0]
			if len(c.Message) == 0 || containsAny(c.Message, "s3cr3t-value") {
				t.Fatalf("condition message %q is empty or leaks the Secret", c.Message)
			}
		})
	}

	// A tenant probing other namespaces learns nothing: another tenant's
	// SyncService, a platform claim outside the platform tenant, one in a
	// namespace of no tenant and one that does not exist read the same.
	t.Run("a SyncService that is not yours reads as one that does not exist", func(t *testing.T) {
		probe := func(name string, ref v1alpha1.SyncServiceReference) metav1.Condition {
			src := armis(name, acmeNS, "armis-ok", ref)
			mustCreate(t, src)
			sourceReady(t, src, metav1.ConditionFalse, v1alpha1.ReasonSyncServiceNotFound)
			c := src.Status.Conditions[0]
			c.Message = strings.ReplaceAll(c.Message, ref.Namespace+"/"+ref.Name, "<ref>")
			return c
		}
		missing := probe("probe-missing", v1alpha1.SyncServiceReference{Namespace: globexNS, Name: "no-such-edge"})
		for name, ref := range map[string]v1alpha1.SyncServiceReference{
			"probe-globex":   {Namespace: globexNS, Name: "edge"},
			"probe-platform": {Namespace: acmeNS, Name: "fake-platform"},
			"probe-stray":    {Namespace: unlabeled.Name, Name: "stray"},
		} {
			got := probe(name, ref)
			if got.Reason != missing.Reason || got.Message != missing.Message {
				t.Errorf("%s: %s %q differs from a missing SyncService's %s %q", name, got.Reason, got.Message, missing.Reason, missing.Message)
			}
			if strings.Contains(got.Message, "globex") && !strings.Contains(missing.Message, "globex") {
				t.Errorf("%s names the other tenant: %q", name, got.Message)
			}
		}
	})

	// events are the reasons of the events about a source of acme, oldest first.
	events := func(name string) []string {
		var list eventsv1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(acmeNS)); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(list.Items, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
		var out []string
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "IntegrationSource" && ev.Regarding.Name == name {
				out = append(out, ev.Type+" "+ev.Reason)
			}
		}
		return out
	}

	t.Run("a Secret created later makes the source Ready, with an event; one Ready at once has none", func(t *testing.T) {
		waitFor(t, "the Warning event of source no-secret", func() error {
			if got := events("no-secret"); !slices.Equal(got, []string{"Warning " + v1alpha1.ReasonSecretNotFound}) {
				return fmt.Errorf("events %q", got)
			}
			return nil
		})
		src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "no-secret", Namespace: acmeNS}}
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "missing", Namespace: acmeNS}, Data: map[string][]byte{"secret_key": []byte("x")}})
		sourceReady(t, src, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
		waitFor(t, "the Normal event of source no-secret", func() error {
			want := []string{"Warning " + v1alpha1.ReasonSecretNotFound, "Normal " + v1alpha1.ReasonReconciled}
			if got := events("no-secret"); !slices.Equal(got, want) {
				return fmt.Errorf("events %q, want %q", got, want)
			}
			return nil
		})
		// Recorded before no-secret's second event: had it been sent, it is
		// here. (Had the source first found no SyncService, a Warning would
		// come first.)
		for _, name := range []string{"ok", "own", "faker"} {
			if got := events(name); len(got) > 0 && !strings.HasPrefix(got[0], "Warning ") {
				t.Errorf("source %s, Ready from its first reconcile, has events %q", name, got)
			}
		}
	})

	t.Run("labeling the namespace resolves the tenant", func(t *testing.T) {
		ns := &corev1.Namespace{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: unlabeled.Name}, ns); err != nil {
			t.Fatal(err)
		}
		ns.Labels = map[string]string{v1alpha1.TenantLabel: "globex"}
		if err := env.Client.Update(ctx, ns); err != nil {
			t.Fatal(err)
		}
		src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "no-tenant", Namespace: unlabeled.Name}}
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "armis-ok", Namespace: unlabeled.Name}, Data: map[string][]byte{"secret_key": []byte("x")}})
		sourceReady(t, src, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
		if src.Status.AssignedWorker != "platform-sync-globex" {
			t.Fatalf("assignedWorker %q", src.Status.AssignedWorker)
		}
	})

	t.Run("editing a source keeps the gateway's status fields", func(t *testing.T) {
		src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "ok", Namespace: acmeNS}}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), src); err != nil {
			t.Fatal(err)
		}
		gw := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
			"devicesDiscovered": int64(42), "lastSyncResult": "Success", "lastRunID": "0b7d3c1e-0000-4000-8000-000000000001",
			"conditions": []any{map[string]any{"type": "Synced", "status": "True", "reason": "RunSucceeded", "message": "42 devices",
				"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}},
		}}}
		gw.SetAPIVersion(v1alpha1.GroupVersion.String())
		gw.SetKind("IntegrationSource")
		gw.SetName(src.Name)
		gw.SetNamespace(src.Namespace)
		if err := env.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(gw), client.FieldOwner("sync-operator-gateway")); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"pollInterval":"10m"}}`))); err != nil {
			t.Fatal(err)
		}
		sourceReady(t, src, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
		if src.Status.DevicesDiscovered != 42 || src.Status.LastRunID == "" || len(src.Status.Conditions) != 2 {
			t.Fatalf("gateway fields lost: %+v", src.Status)
		}
	})
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
