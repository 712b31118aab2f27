package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/workload"
)

// gatewaySA is the gateway's ServiceAccount, as opts names it, in the
// operator namespace: the user the gateway authenticates as.
var gatewaySA = "system:serviceaccount:" + operatorNS + ":" + opts.GatewayServiceAccount

// access is what a client may do with one Secret: get it, and list and
// watch it alone (field selector metadata.name, as the gateway does).
func access(ctx context.Context, cs kubernetes.Interface, ns, name string) map[string]error {
	secrets := cs.CoreV1().Secrets(ns)
	one := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
	_, getErr := secrets.Get(ctx, name, metav1.GetOptions{})
	_, listErr := secrets.List(ctx, one)
	w, watchErr := secrets.Watch(ctx, one)
	if watchErr == nil {
		w.Stop()
	}
	return map[string]error{"get": getErr, "list": listErr, "watch": watchErr}
}

// TestGatewayReadsOnlyReferencedCredentials runs the gateway as it ships:
// its ServiceAccount with the ClusterRole of config/rbac/gateway/role.yaml,
// plus the Roles the manager (with its own shipped RBAC) grants. It may
// read the credentials Secrets that sources reference, and nothing else: no
// CA, no SVID, no onboarding bundle, no platform identity, no unreferenced
// Secret, not even when a hostile source names one of them as credentials.
func TestGatewayReadsOnlyReferencedCredentials(t *testing.T) {
	ctx := context.Background()
	startManager(t, opts)
	gw, err := env.UserWithRoles(ctx, gatewaySA, "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gateway := kubernetes.NewForConfigOrDie(gw.Config())

	const slug = "vault"
	mustCreate(t, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}})
	ns := tenantNamespace(t, slug)
	platformSync := v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}
	armis := func(name, ns, secret string) *v1alpha1.IntegrationSource {
		return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationArmis, Endpoint: "https://armis.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: secret},
			SyncServiceRef: platformSync, Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}},
		}}
	}
	secret := func(ns, name string, labels map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Data: map[string][]byte{"secret_key": []byte("value-of-" + name)}}
	}
	// An OnPrem SyncService: its onboarding bundle, and the tenant's CA.
	mustCreate(t, &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: ns}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}})
	mustCreate(t,
		secret(ns, "creds", nil), secret(ns, "shared", nil), secret(ns, "unreferenced", nil),
		secret(ns, "marked", map[string]string{platform.ManagedByLabel: platform.ManagedBy}),
		secret(operatorNS, "platform-creds", nil),
	)
	good := armis("good", ns, "creds")
	mustCreate(t, good, armis("also-shared", ns, "shared"), armis("shared", ns, "shared"), armis("platform", operatorNS, "platform-creds"))

	// The platform SyncService's worker for the tenant has an SVID Secret.
	ss := &v1alpha1.SyncService{}
	waitFor(t, "the platform SyncService", func() error {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: controllers.PlatformSyncName}, ss)
	})
	svid := workload.Worker{SyncService: ss, TenantSlug: slug}.IdentitySecretName()
	operatorSecrets := []client.ObjectKey{
		{Namespace: operatorNS, Name: platform.RootCASecret},
		{Namespace: operatorNS, Name: platform.IdentitySecret},
		{Namespace: operatorNS, Name: platform.TenantCASecretPrefix + slug},
		{Namespace: operatorNS, Name: svid},
		{Namespace: ns, Name: "edge-onboarding"},
	}
	for _, key := range operatorSecrets {
		waitFor(t, "Secret "+key.String(), func() error { return env.Client.Get(ctx, key, &corev1.Secret{}) })
	}

	// Hostile sources name each of them as credentials, in the namespace
	// where it lives; all are refused, and none is granted.
	hostile := []*v1alpha1.IntegrationSource{armis("steal-marked", ns, "marked")}
	for i, key := range operatorSecrets {
		hostile = append(hostile, armis(fmt.Sprintf("steal-%d", i), key.Namespace, key.Name))
	}
	for _, src := range hostile {
		mustCreate(t, src)
	}
	for _, src := range hostile {
		sourceReady(t, src, metav1.ConditionFalse, v1alpha1.ReasonSecretNotAllowed)
	}
	sourceReady(t, good, metav1.ConditionTrue, v1alpha1.ReasonReconciled)

	readable := []client.ObjectKey{{Namespace: ns, Name: "creds"}, {Namespace: ns, Name: "shared"}, {Namespace: operatorNS, Name: "platform-creds"}}
	for _, key := range readable {
		waitFor(t, "the gateway's access to "+key.String(), func() error {
			for verb, err := range access(ctx, gateway, key.Namespace, key.Name) {
				if err != nil {
					return fmt.Errorf("%s: %w", verb, err)
				}
			}
			return nil
		})
	}
	forbidden := append([]client.ObjectKey{{Namespace: ns, Name: "unreferenced"}, {Namespace: ns, Name: "marked"}}, operatorSecrets...)
	for _, key := range forbidden {
		for verb, err := range access(ctx, gateway, key.Namespace, key.Name) {
			if !apierrors.IsForbidden(err) {
				t.Errorf("the gateway may %s Secret %s: %v", verb, key, err)
			}
		}
	}
	for _, namespace := range []string{ns, operatorNS, metav1.NamespaceAll} {
		if _, err := gateway.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the gateway may list the Secrets of %q: %v", namespace, err)
		}
	}

	// The grant follows the sources: one Secret named by two sources stays
	// while one of them does; the last source gone, the Role goes too.
	role := &rbacv1.Role{}
	names := func() []string {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.GatewayAccessName}, role); err != nil || len(role.Rules) != 1 {
			return nil
		}
		return role.Rules[0].ResourceNames
	}
	if got := names(); !slices.Equal(got, []string{"creds", "shared"}) {
		t.Fatalf("granted %v, want [creds shared]", got)
	}
	binding := &rbacv1.RoleBinding{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.GatewayAccessName}, binding); err != nil {
		t.Fatal(err)
	}
	if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != rbacv1.ServiceAccountKind || binding.Subjects[0].Name != opts.GatewayServiceAccount ||
		binding.Subjects[0].Namespace != operatorNS || binding.RoleRef.Name != controllers.GatewayAccessName {
		t.Fatalf("RoleBinding binds %v to %v", binding.RoleRef, binding.Subjects)
	}
	for _, name := range []string{"good", "shared"} {
		if err := env.Client.Delete(ctx, &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the grant of creds revoked", func() error {
		if got := names(); !slices.Equal(got, []string{"shared"}) {
			return fmt.Errorf("granted %v", got)
		}
		if err := access(ctx, gateway, ns, "creds")["get"]; !apierrors.IsForbidden(err) {
			return fmt.Errorf("the gateway may still get creds: %v", err)
		}
		return nil
	})
	if err := env.Client.Delete(ctx, &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "also-shared", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Role and RoleBinding deleted", func() error {
		for _, o := range []client.Object{&rbacv1.Role{}, &rbacv1.RoleBinding{}} {
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.GatewayAccessName}, o); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T: %v", o, err)
			}
		}
		return nil
	})
}

// The manager labels its own namespace for the platform tenant, and may
// patch no other namespace (which would move it into any tenant).
func TestManagerPatchesOnlyItsNamespace(t *testing.T) {
	ctx := context.Background()
	manager, err := client.New(managerConfig, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	label := func(name string) error {
		return manager.Apply(ctx, applycorev1.Namespace(name).WithLabels(map[string]string{v1alpha1.TenantLabel: "platform"}),
			client.FieldOwner("patch-test"), client.ForceOwnership, client.DryRunAll)
	}
	if err := label(operatorNS); err != nil {
		t.Fatalf("the manager may not label its own namespace: %v", err)
	}
	other := tenantNamespace(t, "bystander")
	if err := label(other); !apierrors.IsForbidden(err) {
		t.Fatalf("the manager may label namespace %s: %v", other, err)
	}
}
