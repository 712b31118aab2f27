package v1alpha1_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/serviceradar/sync-operator/test"
)

// newSincePreviousRelease are the spec fields added after the release point
// whose objects testdata/previous-release holds (hack/cluster/previous-release).
// Empty it when that fixture is refreshed at a release.
var newSincePreviousRelease = []string{
	"IntegrationSource spec.dryRun",
	"IntegrationSource spec.historyLimit",
	"IntegrationSource spec.maxRetractPercent",
	"SyncService spec.gatewayAddress",
}

// TestPreviousReleaseObjectsStayValid creates the objects users wrote at the
// previous release, with every optional spec field set, on this tree's CRDs:
// each must still be accepted and read back with every field it set unchanged
// (not pruned, renamed or re-defaulted). A spec field of this tree that the
// fixture does not set must be listed in newSincePreviousRelease, so a field
// cannot be renamed or dropped without this test noticing.
func TestPreviousReleaseObjectsStayValid(t *testing.T) {
	ctx := context.Background()
	ns := tenantNamespace(t, "previous")
	objs := previousReleaseObjects(t, ns)

	set := map[string]map[string]bool{}
	for _, obj := range objs {
		kind := obj.GetKind()
		schema := crdSpecSchema(t, kind)
		if set[kind] == nil {
			set[kind] = map[string]bool{}
		}
		spec, _ := obj.Object["spec"].(map[string]any)
		leafPaths("spec", spec, schema, set[kind])

		if err := env.Client.Create(ctx, obj); err != nil {
			t.Errorf("%s %s of the previous release is refused: %v", kind, obj.GetName(), err)
			continue
		}
		stored := &unstructured.Unstructured{}
		stored.SetGroupVersionKind(obj.GroupVersionKind())
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), stored); err != nil {
			t.Fatal(err)
		}
		for _, diff := range subsetDiff("spec", spec, stored.Object["spec"]) {
			t.Errorf("%s %s of the previous release reads back changed: %s", kind, obj.GetName(), diff)
		}
	}

	known := map[string]bool{}
	for _, kind := range []string{"Tenant", "SyncService", "IntegrationSource"} {
		schema := crdSpecSchema(t, kind)
		walk("spec", schema, func(path string, _ apiextensionsv1.JSONSchemaProps) { known[kind+" "+path] = true })
		walk("spec", schema, func(path string, p apiextensionsv1.JSONSchemaProps) {
			if !isLeaf(p) || set[kind][path] || slices.Contains(newSincePreviousRelease, kind+" "+path) {
				return
			}
			t.Errorf("%s %s is neither set by testdata/previous-release nor listed in newSincePreviousRelease", kind, path)
		})
	}
	for _, field := range newSincePreviousRelease {
		if !known[field] {
			t.Errorf("newSincePreviousRelease lists %q, which this tree's CRDs do not have", field)
		}
	}
}

// previousReleaseObjects reads testdata/previous-release, each object with a
// unique name, in namespace ns.
func previousReleaseObjects(t *testing.T, ns string) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(test.RepoRoot(), "api", "v1alpha1", "testdata", "previous-release", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixture in testdata/previous-release: %v", err)
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			raw := map[string]any{}
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(raw) == 0 {
				continue
			}
			doc, err := yaml.Marshal(raw)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, render(t, string(doc), ns))
		}
	}
	return out
}

// crdSpecSchema is the spec schema of kind in the CRDs the API server serves.
func crdSpecSchema(t *testing.T, kind string) apiextensionsv1.JSONSchemaProps {
	t.Helper()
	name := strings.ToLower(kind) + "s.integrations.serviceradar.io"
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, crd); err != nil {
		t.Fatal(err)
	}
	return crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
}

// isLeaf reports whether a schema property holds a value rather than
// named properties or a list of objects.
func isLeaf(p apiextensionsv1.JSONSchemaProps) bool {
	if len(p.Properties) > 0 {
		return false
	}
	if p.Items != nil && p.Items.Schema != nil {
		return false
	}
	return p.AdditionalProperties == nil || p.AdditionalProperties.Schema == nil
}

// leafPaths records in out the schema paths (as walk names them) of the
// values that v sets.
func leafPaths(path string, v any, s apiextensionsv1.JSONSchemaProps, out map[string]bool) {
	switch {
	case len(s.Properties) > 0:
		m, _ := v.(map[string]any)
		for k, child := range m {
			leafPaths(path+"."+k, child, s.Properties[k], out)
		}
	case s.Items != nil && s.Items.Schema != nil:
		l, _ := v.([]any)
		for _, item := range l {
			leafPaths(path+"[]", item, *s.Items.Schema, out)
		}
	case s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil:
		m, _ := v.(map[string]any)
		for _, child := range m {
			leafPaths(path+"{}", child, *s.AdditionalProperties.Schema, out)
		}
	default:
		out[path] = true
	}
}

// subsetDiff lists the values of want that got does not hold equally.
func subsetDiff(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, read %v", path, got)}
		}
		var out []string
		for k, v := range w {
			out = append(out, subsetDiff(path+"."+k, v, g[k])...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want %v, read %v", path, want, got)}
		}
		var out []string
		for i := range w {
			out = append(out, subsetDiff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	default:
		if !reflect.DeepEqual(fmt.Sprint(want), fmt.Sprint(got)) {
			return []string{fmt.Sprintf("%s: wrote %v, read %v", path, want, got)}
		}
		return nil
	}
}
