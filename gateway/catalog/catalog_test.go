package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/test/kubetest"
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
	tenant := func(gen int64, tenantID, ca string) client.Object {
		return &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Status: v1alpha1.TenantStatus{TenantID: tenantID, CAFingerprint: ca}}
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
		{"tenant condition write", tenant(1, "id", "ca-1"), tenant(1, "id", "ca-1"), true},
		{"tenant CA replaced", tenant(1, "id", "ca-1"), tenant(1, "id", "ca-2"), false},
		{"tenant id cleared", tenant(1, "id", "ca-1"), tenant(1, "", "ca-1"), false},
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

// referenced lists the Secrets the catalog keeps track of, with whether its
// watch holds the Secret.
func referenced(c *Catalog) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for key, r := range c.refs {
		_, held, _ := r.watch.store.GetByKey(key.String())
		out[key.String()] = held
	}
	return out
}

// catalogEnv is an API server with the platform tenant (its SyncService
// platform-sync) and tenant acme, and the identity of acme's platform worker.
type catalogEnv struct {
	env              *kubetest.Env
	platformNS, acme string
	ss               *v1alpha1.SyncService
	id               identity.Identity
}

func startCatalogEnv(t *testing.T) *catalogEnv {
	t.Helper()
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	e := &catalogEnv{env: env}
	if e.platformNS, _, err = env.OnboardTenant(ctx, "platform", true); err != nil {
		t.Fatal(err)
	}
	if e.acme, _, err = env.OnboardTenant(ctx, "acme", false); err != nil {
		t.Fatal(err)
	}
	e.ss = &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: e.platformNS, Name: "platform-sync"},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeSaaS, Platform: true, Partition: "default"}}
	if err := env.Client.Create(ctx, e.ss); err != nil {
		t.Fatal(err)
	}
	e.id = identity.Identity{Class: identity.ClassPlatform, ComponentType: identity.ComponentSync, TenantSlug: "acme", Partition: "default",
		ComponentID: "platform-sync-acme", SPIFFEID: spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/platform-sync-acme")}
	return e
}

// armis is an Armis source of acme served by the platform SyncService.
func (e *catalogEnv) armis(secret string) *v1alpha1.IntegrationSource {
	return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "armis"},
		Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationArmis, Endpoint: "https://armis.example", Partition: "default",
			CredentialsSecretRef: &v1alpha1.SecretReference{Name: secret}, SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: e.platformNS, Name: "platform-sync"},
			Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}}}}
}

func (e *catalogEnv) secret(name, value string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: name}, Data: map[string][]byte{"secret_key": []byte(value)}}
}

func TestSecretsNoSourceReferencesAreForgotten(t *testing.T) {
	ctx := context.Background()
	e := startCatalogEnv(t)
	kube := e.env.Client
	src := e.armis("one")
	for _, o := range []client.Object{src, e.secret("one", "one-value"), e.secret("two", "two-value")} {
		if err := kube.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	c := New(kube, kubernetes.NewForConfigOrDie(e.env.Config).CoreV1(), "platform")
	build := func(wantErr error) {
		t.Helper()
		c.Invalidate("acme")
		if _, err := c.Sync(ctx, e.id); !errors.Is(err, wantErr) {
			t.Fatalf("Sync: %v, want %v", err, wantErr)
		}
	}
	check := func(want map[string]bool) {
		t.Helper()
		if got := referenced(c); !maps.Equal(got, want) {
			t.Fatalf("referenced Secrets %v, want %v", got, want)
		}
	}
	key := func(name string) string { return e.acme + "/" + name }
	build(nil)
	check(map[string]bool{key("one"): true})

	// The source moves to another Secret: the first one is forgotten, data and all.
	src.Spec.CredentialsSecretRef.Name = "two"
	if err := kube.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	build(nil)
	check(map[string]bool{key("two"): true})

	// A missing Secret stays referenced (its creation must invalidate), without data.
	src.Spec.CredentialsSecretRef.Name = "three"
	if err := kube.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	build(nil)
	check(map[string]bool{key("three"): false})

	// The source is gone: nothing is referenced any more.
	if err := kube.Delete(ctx, src); err != nil {
		t.Fatal(err)
	}
	build(nil)
	check(map[string]bool{})

	// A worker no longer enrolled, or whose SyncService is deleted, leaves nothing behind.
	src = e.armis("one")
	if err := kube.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	build(nil)
	check(map[string]bool{key("one"): true})
	c.forgetSyncService(e.ss.UID)
	check(map[string]bool{})
	build(nil)
	if err := kube.Delete(ctx, e.ss); err != nil {
		t.Fatal(err)
	}
	build(ErrNotEnrolled)
	check(map[string]bool{})
}

// The gateway reads a referenced Secret with no more than a Role granting
// it by name: refused, the source is left out; granted, it arrives as a
// change (the waiters are woken) and its rotations follow.
func TestSecretWatchFollowsItsGrant(t *testing.T) {
	ctx := context.Background()
	e := startCatalogEnv(t)
	kube := e.env.Client
	// What kubectl apply leaves in annotations (the whole Secret) must not
	// reach the gateway's memory: only the data sources need is kept.
	const marker = "c2VjcmV0LW1hcmtlci12YWx1ZQ"
	creds := e.secret("creds", "first")
	creds.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"secret_key":"` + marker + `"}}`}
	creds.Labels = map[string]string{"marker": marker}
	for _, o := range []client.Object{e.armis("creds"), creds} {
		if err := kube.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	user, err := e.env.AddUser(envtest.User{Name: "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	c := New(kube, kubernetes.NewForConfigOrDie(user.Config()).CoreV1(), "platform")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.watchCtx = wctx
	c.mu.Unlock()
	credentials := func() string {
		t.Helper()
		entry, err := c.Sync(ctx, e.id)
		if err != nil {
			t.Fatal(err)
		}
		return entry.Bundle.Sources[e.acme+"/armis"].Credentials["secret_key"]
	}
	woken := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(time.Minute):
			t.Fatalf("no invalidation after %s", what)
		}
	}

	changed := c.Changed("acme")
	if got := credentials(); got != "" {
		t.Fatalf("credentials %q served without a grant", got)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "gateway-credentials"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}, ResourceNames: []string{"creds"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: e.acme, Name: "gateway-credentials"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "gateway"}}}
	for _, o := range []client.Object{role, binding} {
		if err := kube.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	woken(changed, "the grant")
	if got := credentials(); got != "first" {
		t.Fatalf("credentials %q after the grant, want first", got)
	}
	held, err := c.secret(ctx, client.ObjectKeyFromObject(creds))
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := json.Marshal(held); strings.Contains(string(raw), marker) || held.Annotations != nil || held.Labels != nil || held.ManagedFields != nil {
		t.Fatalf("the watched Secret keeps more than its data: %s", raw)
	}

	changed = c.Changed("acme")
	sec := e.secret("creds", "second")
	if err := kube.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	woken(changed, "the rotation")
	if got := credentials(); got != "second" {
		t.Fatalf("credentials %q after the rotation, want second", got)
	}

	// A Secret that turns out to be the operator's (its name taken by an
	// identity the manager issues) loses its data in the gateway's memory,
	// even over a watch that is still open.
	changed = c.Changed("acme")
	sec.Labels = map[string]string{platform.ManagedByLabel: platform.ManagedBy}
	if err := kube.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	woken(changed, "the operator's label")
	if got := credentials(); got != "" {
		t.Fatalf("credentials %q served from a Secret of the operator", got)
	}
}
