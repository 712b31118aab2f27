package helmtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

// TestTenantLabelPolicy installs the chart's ValidatingAdmissionPolicy on a
// real API server and tries, as a user who may create and edit namespaces
// but is not a configured principal, every way of moving a namespace into a
// tenant: creating it labelled, adding the label, changing it, removing it.
// Each is refused; the configured principals (a user, a group, the manager's
// ServiceAccount) may, and everyone may still edit other labels.
func TestTenantLabelPolicy(t *testing.T) {
	helmBin(t)
	objs := render(t, "--set", "tenantLabelPolicy.users={alice}", "--set", "tenantLabelPolicy.groups={system:masters,tenant-admins}")
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	installed := 0
	for _, o := range objs {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") {
			if err := env.Client.Create(ctx, o); err != nil {
				t.Fatalf("creating %s: %v", key(o), err)
			}
			installed++
		}
	}
	if installed != 2 {
		t.Fatalf("the chart rendered %d admission policy objects, want the policy and its binding", installed)
	}
	// Everyone below may create, update and patch namespaces: RBAC alone
	// would let each of them move a namespace into any tenant.
	editor := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "namespace-editor"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces", "namespaces/status", "namespaces/finalize"},
			Verbs: []string{"get", "create", "update", "patch"}}}}
	if err := env.Client.Create(ctx, editor); err != nil {
		t.Fatal(err)
	}
	as := func(name string, groups ...string) client.Client {
		t.Helper()
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "namespace-editor-" + strings.ReplaceAll(name, ":", "-")},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: editor.Name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: name}}}
		if err := env.Client.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
		u, err := env.AddUser(envtest.User{Name: name, Groups: groups})
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(u.Config(), client.Options{Scheme: env.Client.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	mallory := as("mallory", "developers")
	principals := map[string]client.Client{
		"a configured user":              as("alice"),
		"a member of a configured group": as("bob", "tenant-admins"),
		"the manager's ServiceAccount":   as("system:serviceaccount:" + namespace + ":sync-operator-manager"),
	}

	labelled := func(name, slug string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.TenantLabel: slug}}}
	}
	setLabel := func(c client.Client, name, value string) error {
		patch := `{"metadata":{"labels":{"` + v1alpha1.TenantLabel + `":"` + value + `"}}}`
		if value == "" {
			patch = `{"metadata":{"labels":{"` + v1alpha1.TenantLabel + `":null}}}`
		}
		return c.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.RawPatch(types.MergePatchType, []byte(patch)))
	}
	refused := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Fatalf("%s: %v, want the tenant label policy to refuse it", what, err)
		}
		if !strings.Contains(err.Error(), "sync-operator tenant label policy") {
			t.Fatalf("%s was refused, but not by the tenant label policy: %v", what, err)
		}
	}

	// The policy takes effect once the API server has compiled it.
	var created error
	probe := 0
	test.Eventually(t, "the tenant label policy refusing a labelled namespace", time.Minute, func() bool {
		probe++
		created = mallory.Create(ctx, labelled(fmt.Sprintf("probe-%d", probe), "acme"))
		return created != nil
	})
	refused("creating a namespace labelled for a tenant", created)

	// Namespaces set up by an administrator (system:masters).
	for _, ns := range []*corev1.Namespace{labelled("acme-team", "acme"), {ObjectMeta: metav1.ObjectMeta{Name: "scratch"}}} {
		if err := env.Client.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	refused("adding the label to a namespace", setLabel(mallory, "scratch", "acme"))
	refused("changing a namespace's tenant", setLabel(mallory, "acme-team", "globex"))
	refused("removing a namespace's tenant label", setLabel(mallory, "acme-team", ""))
	// The subresources take the namespace's metadata too.
	viaStatus := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme-team"}}
	refused("changing the tenant through namespaces/status", mallory.Status().Patch(ctx, viaStatus,
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+v1alpha1.TenantLabel+`":"globex"}}}`))))
	viaFinalize := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "acme-team"}, viaFinalize); err != nil {
		t.Fatal(err)
	}
	viaFinalize.Labels[v1alpha1.TenantLabel] = "globex"
	refused("changing the tenant through namespaces/finalize", mallory.SubResource("finalize").Update(ctx, viaFinalize))
	ns := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "acme-team"}, ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels[v1alpha1.TenantLabel] != "acme" {
		t.Fatalf("a refused edit changed the tenant label: %v", ns.Labels)
	}
	// What does not touch the tenant label stays allowed.
	if err := mallory.Patch(ctx, ns, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"blue"}}}`))); err != nil {
		t.Fatalf("editing another label of a tenant namespace: %v", err)
	}
	if err := mallory.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mallory-scratch"}}); err != nil {
		t.Fatalf("creating a namespace without the label: %v", err)
	}

	for who, c := range principals {
		t.Run(who, func(t *testing.T) {
			name := "ns-" + strings.ToLower(strings.NewReplacer(" ", "-", "'", "").Replace(who))
			if err := c.Create(ctx, labelled(name, "acme")); err != nil {
				t.Fatalf("creating a labelled namespace: %v", err)
			}
			if err := setLabel(c, name, "globex"); err != nil {
				t.Fatalf("changing the tenant: %v", err)
			}
			if err := setLabel(c, name, ""); err != nil {
				t.Fatalf("removing the label: %v", err)
			}
		})
	}
}
