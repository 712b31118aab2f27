package helmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

// TestInstallAndKustomize installs the chart into a real API server (with
// the restricted Pod Security Standard enforced on its namespace), checks
// that every rendered object exists and that its pods would be admitted, then
// builds config/default with kubectl kustomize and compares it with the
// chart's defaults, and uninstalls (the CRDs stay).
func TestInstallAndKustomize(t *testing.T) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	user, err := env.AddUser(envtest.User{Name: "helmtest", Groups: []string{"system:masters"}})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcFile := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// With spire.enabled the chart renders the gateway's ClusterSPIFFEID.
	installSPIRECRD(t, env)

	for _, tc := range []struct {
		name      string
		args      []string
		kustomize bool // compare config/default with this rendering
	}{
		{name: "defaults", kustomize: true},
		// Everything of the full values (the gateway's ClusterSPIFFEID
		// included) but the ServiceMonitor, whose CRD this API server lacks.
		{name: "full values", args: []string{"-f", fullValues, "--set", "serviceMonitor.enabled=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) { installCase(ctx, t, env, kcFile, tc.args, tc.kustomize) })
	}
}

// installCase installs the chart with args, checks it and uninstalls it.
func installCase(ctx context.Context, t *testing.T, env *kubetest.Env, kcFile string, args []string, kustomize bool) {
	want := render(t, args...)
	// kubetest installed the CRDs from config/crd/bases already (and an
	// earlier case may have kept them): the chart takes them over, as it
	// would on a cluster that had them applied by hand.
	installArgs := []string{"install", releaseName, chartDir, "--kubeconfig", kcFile,
		"--namespace", namespace, "--take-ownership", "--timeout", "2m"}
	out, errOut, err := helm(t, append(installArgs, args...)...)
	if err != nil {
		t.Fatalf("helm install: %v\n%s%s", err, out, errOut)
	}
	if strings.Contains(errOut, "PodSecurity") || strings.Contains(errOut, "would violate") {
		t.Errorf("helm install warned about Pod Security:\n%s", errOut)
	}
	if !strings.Contains(out, "STATUS: deployed") {
		t.Errorf("helm install output:\n%s", out)
	}
	// The notes point at the Argo CD health checks the chart ships.
	for _, f := range []string{"argocd/argocd-cm-patch.yaml", "argocd/integrations.serviceradar.io_Tenant.lua",
		"argocd/integrations.serviceradar.io_SyncService.lua", "argocd/integrations.serviceradar.io_IntegrationSource.lua"} {
		if !strings.Contains(out, f) {
			t.Errorf("helm install notes do not name %s:\n%s", f, out)
		}
	}
	t.Run("objects exist", func(t *testing.T) {
		for _, w := range want {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(w.GroupVersionKind())
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.GetNamespace(), Name: w.GetName()}, got); err != nil {
				t.Errorf("%s: %v", key(w), err)
				continue
			}
			if got.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" ||
				got.GetAnnotations()["meta.helm.sh/release-name"] != releaseName {
				t.Errorf("%s is not owned by release %s: labels %v annotations %v", key(w), releaseName, got.GetLabels(), got.GetAnnotations())
			}
		}
	})

	t.Run("pods admitted under restricted", func(t *testing.T) {
		for _, w := range want {
			spec := podSpec(w)
			if spec == nil {
				continue
			}
			pod := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{"name": w.GetName() + "-probe", "namespace": namespace},
				"spec":     spec,
			}}
			if err := env.Client.Create(ctx, pod, client.DryRunAll); err != nil {
				t.Errorf("pod of %s is refused in a restricted namespace: %v", key(w), err)
			}
		}
	})

	// config/default mirrors the chart with its default values.
	if kustomize {
		t.Run("kustomize config/default", func(t *testing.T) {
			out, err := env.Kubectl("kustomize", filepath.Join(test.RepoRoot(), "config", "default"))
			if err != nil {
				t.Fatal(err)
			}
			kust, err := decodeAll([]byte(out))
			if err != nil {
				t.Fatal(err)
			}
			var rest []*unstructured.Unstructured
			for _, o := range kust {
				if o.GetKind() == "Namespace" {
					if o.GetName() != namespace || o.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
						t.Errorf("Namespace %s labels %v", o.GetName(), o.GetLabels())
					}
					continue
				}
				rest = append(rest, o)
			}
			if got, wantKeys := keys(rest), keys(want); !reflect.DeepEqual(got, wantKeys) {
				t.Fatalf("kustomize objects differ from the chart defaults:\n kustomize %v\n chart     %v", got, wantKeys)
			}
			for _, k := range rest {
				c := find(want, k.GetKind(), k.GetName())
				if k.GetNamespace() != c.GetNamespace() {
					t.Errorf("%s: namespace %q, chart %q", key(k), k.GetNamespace(), c.GetNamespace())
				}
				for _, d := range diff(strip(k), strip(c)) {
					t.Errorf("%s differs from the chart: %s", key(k), d)
				}
			}
			// The API server accepts the build as it stands (server-side dry run).
			if out, err := env.Kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
				"-k", filepath.Join(test.RepoRoot(), "config", "default")); err != nil {
				t.Errorf("kubectl apply --dry-run=server -k config/default: %v\n%s", err, out)
			}
		})
	}

	t.Run("uninstall keeps CRDs only with crds.keep", func(t *testing.T) {
		out, errOut, err := helm(t, "uninstall", releaseName, "--kubeconfig", kcFile, "--namespace", namespace)
		if err != nil {
			t.Fatalf("helm uninstall: %v\n%s%s", err, out, errOut)
		}
		for _, w := range want {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(w.GroupVersionKind())
			err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.GetNamespace(), Name: w.GetName()}, got)
			kept := w.GetKind() == "CustomResourceDefinition" && w.GetAnnotations()["helm.sh/resource-policy"] == "keep"
			switch {
			case kept && err != nil:
				t.Errorf("%s was deleted despite helm.sh/resource-policy: keep: %v", key(w), err)
			case !kept && err == nil && got.GetDeletionTimestamp() == nil:
				t.Errorf("%s survived helm uninstall", key(w))
			case !kept && err != nil && !apierrors.IsNotFound(err):
				t.Errorf("%s: %v", key(w), err)
			}
		}
	})
}

// strip drops what only Helm adds (its labels, the chart comment) so a
// chart object compares with its kustomize counterpart.
func strip(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy()
	labels := c.GetLabels()
	for _, l := range []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "app.kubernetes.io/part-of"} {
		delete(labels, l)
	}
	c.SetLabels(labels)
	annotations := c.GetAnnotations()
	delete(annotations, "helm.sh/resource-policy")
	c.SetAnnotations(annotations)
	if len(labels) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "labels")
	}
	if len(annotations) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	}
	return c.Object
}

// diff lists the paths at which a and b differ.
func diff(a, b any, path ...string) []string {
	p := "." + strings.Join(path, ".")
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		ks := map[string]bool{}
		for k := range am {
			ks[k] = true
		}
		for k := range bm {
			ks[k] = true
		}
		sorted := make([]string, 0, len(ks))
		for k := range ks {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		var out []string
		for _, k := range sorted {
			out = append(out, diff(am[k], bm[k], append(path, k)...)...)
		}
		return out
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok && len(al) == len(bl) {
		var out []string
		for i := range al {
			out = append(out, diff(al[i], bl[i], append(path, fmt.Sprint(i))...)...)
		}
		return out
	}
	if !reflect.DeepEqual(a, b) {
		return []string{fmt.Sprintf("%s: kustomize %v, chart %v", p, a, b)}
	}
	return nil
}
