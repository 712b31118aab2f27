package helmtest

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/workload"
)

// spireCRD is the ClusterSPIFFEID CRD of the SPIRE controller manager,
// reduced to the fields this project renders, with upstream's schema (the
// file names its sources).
var spireCRD = filepath.Join("testdata", "spire.spiffe.io_clusterspiffeids.yaml")

// installSPIRECRD installs spireCRD into env and waits until it is served.
func installSPIRECRD(t *testing.T, env *kubetest.Env) {
	t.Helper()
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{spireCRD}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing the ClusterSPIFFEID CRD: %v", err)
	}
}

// strictCreate creates u with strict field validation (a field the schema
// does not know is an error, not silently pruned), reads it back, checks
// that its spec came through unchanged and deletes it again.
func strictCreate(ctx context.Context, t *testing.T, c client.Client, u *unstructured.Unstructured) {
	t.Helper()
	obj := u.DeepCopy()
	if err := c.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict)); err != nil {
		t.Fatalf("the API server refuses %s under the ClusterSPIFFEID schema: %v", key(u), err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), obj) })
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(u.GroupVersionKind())
	if err := c.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Object["spec"], u.Object["spec"]) {
		t.Errorf("%s: the API server stored spec\n %v\nnot the rendered\n %v", key(u), got.Object["spec"], u.Object["spec"])
	}
}

// TestClusterSPIFFEIDsMatchSPIRESchema renders the chart with SPIRE and
// checks its gateway ClusterSPIFFEID (the gateway's SPIFFE ID, its pods
// only, the configured class) and the manager's arguments, then creates it,
// and a worker ClusterSPIFFEID as the manager renders it, on a real API
// server with the SPIRE controller manager's CRD schema and strict field
// validation.
func TestClusterSPIFFEIDsMatchSPIRESchema(t *testing.T) {
	helmBin(t) // skip before starting the control plane
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
	installSPIRECRD(t, env)

	t.Run("the schema refuses fields it does not know", func(t *testing.T) {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
			"spiffeIDTemplate": "spiffe://serviceradar.local/gateway/platform/default/sync-gateway",
			"classname":        controllers.DefaultSPIREClassName, // misspelt
		}}}
		u.SetGroupVersionKind(workload.ClusterSPIFFEIDGVK)
		u.SetName("misspelt")
		err := env.Client.Create(ctx, u, client.FieldValidation(metav1.FieldValidationStrict))
		if err == nil || !strings.Contains(err.Error(), "classname") {
			t.Fatalf("creating a ClusterSPIFFEID with spec.classname: %v, want an unknown-field error", err)
		}
	})

	defaultID := func(td, slug string) string {
		t.Helper()
		id, err := controllers.GatewaySPIFFEID(spiffeid.RequireTrustDomainFromString(td), slug)
		if err != nil {
			t.Fatal(err)
		}
		return id.String()
	}
	for _, tc := range []struct {
		name        string
		args        []string
		class       string // "" means no className field
		trustDomain string
		slug        string
		id          string
	}{{
		name: "SPIRE with default values", args: []string{"--set", "spire.enabled=true"},
		class: controllers.DefaultSPIREClassName, trustDomain: identity.DefaultTrustDomain, slug: "platform",
		id: defaultID(identity.DefaultTrustDomain, "platform"),
	}, {
		name: "class of the quick install", args: []string{"--set", "spire.enabled=true", "--set", "spire.className=spire-server-spire"},
		class: "spire-server-spire", trustDomain: identity.DefaultTrustDomain, slug: "platform",
		id: defaultID(identity.DefaultTrustDomain, "platform"),
	}, {
		name: "classless", args: []string{"--set", "spire.enabled=true", "--set", "spire.className="},
		trustDomain: identity.DefaultTrustDomain, slug: "platform",
		id: defaultID(identity.DefaultTrustDomain, "platform"),
	}, {
		name: "own gateway ID", args: []string{"--set", "spire.enabled=true", "--set", "spire.spiffeID=spiffe://serviceradar.local/gateway/platform/east/sync-gateway"},
		class: controllers.DefaultSPIREClassName, trustDomain: identity.DefaultTrustDomain, slug: "platform",
		id: "spiffe://serviceradar.local/gateway/platform/east/sync-gateway",
	}, {
		name: "full values", args: []string{"-f", fullValues},
		class: controllers.DefaultSPIREClassName, trustDomain: "example.org", slug: "root",
		id: defaultID("example.org", "root"),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			var ids []*unstructured.Unstructured
			for _, o := range objs {
				if o.GroupVersionKind() == workload.ClusterSPIFFEIDGVK {
					ids = append(ids, o)
				}
			}
			if len(ids) != 1 {
				t.Fatalf("%d ClusterSPIFFEIDs rendered, want the gateway's: %v", len(ids), keys(objs))
			}
			u := ids[0]
			if u.GetName() != namespace+"-"+gateway {
				t.Errorf("ClusterSPIFFEID name %q, want %q (cluster-scoped: the release namespace and the gateway)", u.GetName(), namespace+"-"+gateway)
			}
			class, hasClass, _ := unstructured.NestedString(u.Object, "spec", "className")
			if class != tc.class || hasClass != (tc.class != "") {
				t.Errorf("spec.className %q (set %v), want %q", class, hasClass, tc.class)
			}
			tmpl, _, _ := unstructured.NestedString(u.Object, "spec", "spiffeIDTemplate")
			if tmpl != tc.id {
				t.Errorf("spec.spiffeIDTemplate %q, want %q", tmpl, tc.id)
			}
			classifier, err := identity.NewClassifier(tc.trustDomain, tc.slug)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := classifier.ClassifySPIFFEID(spiffeid.RequireFromString(tmpl)); err != nil || got.ComponentType != identity.ComponentGateway {
				t.Errorf("workers would not accept %q as the gateway: %+v %v", tmpl, got, err)
			}
			// The pod selector selects the gateway's pods, and only those of
			// the release namespace.
			sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "podSelector", "matchLabels")
			podLabels, _, _ := unstructured.NestedStringMap(mustFind(t, objs, "Deployment", gateway).Object, "spec", "template", "metadata", "labels")
			managerLabels, _, _ := unstructured.NestedStringMap(mustFind(t, objs, "Deployment", manager).Object, "spec", "template", "metadata", "labels")
			if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(podLabels)) || labels.SelectorFromSet(sel).Matches(labels.Set(managerLabels)) {
				t.Errorf("podSelector %v: gateway pods %v, manager pods %v", sel, podLabels, managerLabels)
			}
			nsSel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "namespaceSelector", "matchLabels")
			if len(nsSel) != 1 || nsSel["kubernetes.io/metadata.name"] != namespace {
				t.Errorf("namespaceSelector %v, want the release namespace %s", nsSel, namespace)
			}
			containsAll(t, "manager args", args(t, objs, manager), "--gateway-trust=spire", "--spire-class-name="+tc.class)
			containsAll(t, "gateway args", args(t, objs, gateway), "--workload-api-addr=unix:///spiffe-workload-api/spire-agent.sock")
			strictCreate(ctx, t, env.Client, u)
		})
	}

	t.Run("worker ClusterSPIFFEID of the manager", func(t *testing.T) {
		for ns, class := range map[string]string{"tenant-a": controllers.DefaultSPIREClassName, "tenant-b": ""} {
			ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "cluster", Namespace: ns}}
			w := workload.Worker{SyncService: ss, TenantSlug: "acme", ComponentID: v1alpha1.ComponentID(ss, "acme"),
				SPIRE: true, SPIREClassName: class}
			id, err := identity.FormatSPIFFEID(spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain), identity.ComponentSync, "acme", "default", w.ComponentID)
			if err != nil {
				t.Fatal(err)
			}
			w.SPIFFEID = id.String()
			u := w.ClusterSPIFFEID()
			if got, _, _ := unstructured.NestedString(u.Object, "spec", "className"); got != class {
				t.Errorf("spec.className %q, want %q", got, class)
			}
			strictCreate(ctx, t, env.Client, u)
		}
	})
}
