package argocdhealth

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/hack/healthgen"
)

func readScripts(t *testing.T) map[string]string {
	t.Helper()
	scripts := map[string]string{}
	for _, kind := range Kinds {
		s, err := ReadScript(kind)
		if err != nil {
			t.Fatal(err)
		}
		scripts[kind] = s
	}
	return scripts
}

// TestGeneratedFilesAreCurrent fails when a health script or the argocd-cm
// patch differs from what hack/healthgen generates from its parts, the
// source of truth (make manifests regenerates them).
func TestGeneratedFilesAreCurrent(t *testing.T) {
	files, err := healthgen.Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not as hack/healthgen generates it; run make manifests\n%s", name, firstDifference(string(got), string(want)))
		}
	}
	if v1alpha1.GroupVersion.Group != healthgen.Group {
		t.Errorf("healthgen.Group %q is not the API group %q", healthgen.Group, v1alpha1.GroupVersion.Group)
	}
}

// TestPatchMatchesScripts checks that the argocd-cm patch carries exactly
// the .lua files beside it, and that a rendered patch parses back to the
// scripts it was rendered from.
func TestPatchMatchesScripts(t *testing.T) {
	scripts := readScripts(t)
	rendered, err := healthgen.RenderPatch(scripts)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePatch(rendered)
	if err != nil {
		t.Fatalf("parsing the rendered patch: %v", err)
	}
	for _, kind := range Kinds {
		if back[kind] != scripts[kind] {
			t.Errorf("the rendered patch does not round-trip the %s script", kind)
		}
	}

	path := filepath.Join(Dir(), PatchFile)
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := ParsePatch(onDisk)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, kind := range Kinds {
		if embedded[kind] != scripts[kind] {
			t.Errorf("%s: the %s script differs from %s; run make manifests\n%s",
				PatchFile, kind, filepath.Base(ScriptPath(kind)), firstDifference(embedded[kind], scripts[kind]))
		}
	}
}

// firstDifference shows the first line where got and want differ.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n  got:  %s\n  want: %s", i+1, gl, wl)
		}
	}
	return "(they differ only in their line count)"
}

// TestParsePatchRejects checks that a patch for another ConfigMap, or with a
// key missing or extra, is refused rather than half compared.
func TestParsePatchRejects(t *testing.T) {
	scripts := readScripts(t)
	good, err := healthgen.RenderPatch(scripts)
	if err != nil {
		t.Fatal(err)
	}
	tenantKey := "  " + ConfigKey("Tenant") + ": |\n"
	tests := []struct {
		name  string
		patch string
		want  string
	}{
		{"other ConfigMap", strings.Replace(string(good), "name: argocd-cm", "name: argocd-rbac-cm", 1), "argocd-rbac-cm"},
		{"missing key", strings.Replace(string(good), tenantKey, "  unrelated: |\n", 1), "no key " + ConfigKey("Tenant")},
		{"extra key", string(good) + "  resource.customizations.health.apps_Deployment: |\n    return {}\n", "unexpected key"},
		{"not YAML", "data: [", "parsing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePatch([]byte(tt.patch))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParsePatch error = %v, want one containing %q", err, tt.want)
			}
		})
	}

	// A one-character edit of a script is noticed.
	edited := map[string]string{}
	for k, v := range scripts {
		edited[k] = v
	}
	edited["SyncService"] = strings.Replace(edited["SyncService"], `"Degraded"`, `"Healthy"`, 1)
	other, err := healthgen.RenderPatch(edited)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePatch(other)
	if err != nil {
		t.Fatal(err)
	}
	if back["SyncService"] == scripts["SyncService"] {
		t.Fatal("an edited script compares equal to the original")
	}
}

// TestReadmeNamesEveryKey keeps the README's install instructions complete.
func TestReadmeNamesEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(Dir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range Kinds {
		for _, want := range []string{ConfigKey(kind) + ": |", filepath.Base(ScriptPath(kind))} {
			if !strings.Contains(string(b), want) {
				t.Errorf("README.md does not mention %q", want)
			}
		}
	}
}
