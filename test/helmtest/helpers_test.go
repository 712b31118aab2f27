package helmtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/serviceradar/sync-operator/test"
)

const (
	// envRequireHelm turns a missing bin/helm into a failure instead of a skip.
	envRequireHelm = "SYNC_TEST_REQUIRE_HELM"
	// envHelm overrides the helm binary (default bin/helm).
	envHelm = "SYNC_TEST_HELM"

	releaseName = "sync-operator"
	namespace   = "serviceradar-system"
)

var (
	chartDir = filepath.Join(test.RepoRoot(), "charts", "sync-operator")
	// helmHome isolates helm's cache, config and data from the user's.
	helmHome string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "helmtest-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helmHome = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// helmBin returns the helm binary, skipping the test when it is missing
// (failing instead when SYNC_TEST_REQUIRE_HELM is set).
func helmBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(envHelm)
	if bin == "" {
		bin = filepath.Join(test.RepoRoot(), "bin", "helm")
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("helm not found at %s (%v): build it with hack/helm-assets.sh", bin, err)
		if os.Getenv(envRequireHelm) != "" {
			t.Fatalf("%s; %s is set, so a missing helm fails", msg, envRequireHelm)
		}
		t.Skipf("%s (set %s to fail instead of skipping)", msg, envRequireHelm)
	}
	return bin
}

// helm runs helm and returns its standard output and standard error.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// render runs helm template with the default namespace and the given extra
// arguments (--set, -f) and returns the objects.
func render(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	base := []string{"template", releaseName, chartDir, "--namespace", namespace}
	out, errOut, err := helm(t, append(base, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, errOut)
	}
	objs, err := decodeAll([]byte(out))
	if err != nil {
		t.Fatalf("decoding helm template output: %v", err)
	}
	return objs
}

// decodeAll decodes a multi-document YAML stream, skipping empty documents.
func decodeAll(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func readObjects(t *testing.T, rel string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(test.RepoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(data)
	if err != nil {
		t.Fatalf("decoding %s: %v", rel, err)
	}
	return objs
}

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + "/" + u.GetName()
}

// keys lists kind/name of the objects, sorted.
func keys(objs []*unstructured.Unstructured) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, key(o))
	}
	sort.Strings(ks)
	return ks
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func mustFind(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		t.Fatalf("no %s %s among %v", kind, name, keys(objs))
	}
	return o
}

func count(objs []*unstructured.Unstructured, kind string) int {
	n := 0
	for _, o := range objs {
		if o.GetKind() == kind {
			n++
		}
	}
	return n
}

// field returns the value at a path of nested maps, or nil.
func field(obj map[string]any, path ...string) any {
	v, found, err := unstructured.NestedFieldNoCopy(obj, path...)
	if err != nil || !found {
		return nil
	}
	return v
}

// podSpec returns the pod template spec of a workload, or nil.
func podSpec(u *unstructured.Unstructured) map[string]any {
	spec, _ := field(u.Object, "spec", "template", "spec").(map[string]any)
	return spec
}

// containers returns every container and init container of a pod spec.
func containers(spec map[string]any) []map[string]any {
	var cs []map[string]any
	for _, k := range []string{"initContainers", "containers"} {
		list, _ := spec[k].([]any)
		for _, c := range list {
			if m, ok := c.(map[string]any); ok {
				cs = append(cs, m)
			}
		}
	}
	return cs
}

func args(t *testing.T, objs []*unstructured.Unstructured, deployment string) []string {
	t.Helper()
	cs := containers(podSpec(mustFind(t, objs, "Deployment", deployment)))
	if len(cs) != 1 {
		t.Fatalf("Deployment %s has %d containers, want 1", deployment, len(cs))
	}
	list, _ := cs[0]["args"].([]any)
	var out []string
	for _, a := range list {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

// restrictedViolations lists how a pod spec breaks the restricted Pod
// Security Standard as this chart applies it.
func restrictedViolations(spec map[string]any) []string {
	var v []string
	psc, _ := spec["securityContext"].(map[string]any)
	if psc["runAsNonRoot"] != true {
		v = append(v, "pod securityContext.runAsNonRoot is not true")
	}
	if field(psc, "seccompProfile", "type") != "RuntimeDefault" {
		v = append(v, "pod securityContext.seccompProfile.type is not RuntimeDefault")
	}
	for _, c := range containers(spec) {
		name := fmt.Sprint(c["name"])
		sc, _ := c["securityContext"].(map[string]any)
		if sc == nil {
			v = append(v, name+": no securityContext")
			continue
		}
		check := func(ok bool, what string) {
			if !ok {
				v = append(v, name+": "+what)
			}
		}
		check(sc["runAsNonRoot"] == true, "runAsNonRoot is not true")
		check(sc["allowPrivilegeEscalation"] == false, "allowPrivilegeEscalation is not false")
		check(sc["readOnlyRootFilesystem"] == true, "readOnlyRootFilesystem is not true")
		check(sc["privileged"] == nil || sc["privileged"] == false, "privileged")
		check(field(sc, "seccompProfile", "type") == "RuntimeDefault", "seccompProfile.type is not RuntimeDefault")
		drop, _ := field(sc, "capabilities", "drop").([]any)
		check(reflect.DeepEqual(drop, []any{"ALL"}), fmt.Sprintf("capabilities.drop is %v, not [ALL]", drop))
		check(field(sc, "capabilities", "add") == nil, "capabilities.add is set")
	}
	for _, vol := range asMaps(spec["volumes"]) {
		if vol["hostPath"] != nil {
			v = append(v, fmt.Sprintf("volume %v is a hostPath", vol["name"]))
		}
	}
	if spec["hostNetwork"] == true || spec["hostPID"] == true || spec["hostIPC"] == true {
		v = append(v, "host namespaces")
	}
	return v
}

func asMaps(v any) []map[string]any {
	list, _ := v.([]any)
	var out []map[string]any
	for _, x := range list {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func containsAll(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %v: missing %q", what, got, w)
		}
	}
}

func hasPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// envVar is the entry of env named name, or nil.
func envVar(env []map[string]any, name string) map[string]any {
	for _, e := range env {
		if e["name"] == name {
			return e
		}
	}
	return nil
}
