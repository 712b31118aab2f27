package image

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/test"
)

// The Dockerfile's build stage must see every package of the module that
// the three binaries import (its first published version did not copy
// diag/, and no image could be built): each one lies under a COPY source
// and outside every .dockerignore pattern.
func TestDockerfileContextHoldsEveryImportedPackage(t *testing.T) {
	root := test.RepoRoot()
	var sources []string
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	stage := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) > 0 && strings.EqualFold(fields[0], "FROM"):
			stage++
		case stage == 1 && len(fields) >= 3 && strings.EqualFold(fields[0], "COPY") && !strings.HasPrefix(fields[1], "--from"):
			for _, src := range fields[1 : len(fields)-1] {
				sources = append(sources, strings.TrimSuffix(filepath.Clean(src), "/"))
			}
		}
	}
	ignored := readIgnore(t, filepath.Join(root, ".dockerignore"))

	list := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/...")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency: go mod download fetches it
		}
		checked++
		if !covered(rel, sources) {
			t.Errorf("package %s is imported by ./cmd/... but no COPY of the Dockerfile's build stage copies it (sources %v)", rel, sources)
		}
		for _, pat := range ignored {
			if ignores(pat, rel) {
				t.Errorf("package %s is imported by ./cmd/... but .dockerignore pattern %q leaves it out", rel, pat)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d packages of the module found: go list output %q", checked, out)
	}
}

// covered reports whether rel lies under one of the COPY sources.
func covered(rel string, sources []string) bool {
	for _, s := range sources {
		if s == "." || rel == s || strings.HasPrefix(rel, s+"/") {
			return true
		}
	}
	return false
}

// ignores reports whether a .dockerignore pattern matches rel or one of its
// parent folders.
func ignores(pattern, rel string) bool {
	pattern = strings.TrimPrefix(strings.TrimPrefix(pattern, "**/"), "/")
	for p := rel; p != "." && p != ""; p = filepath.Dir(p) {
		if ok, _ := filepath.Match(pattern, p); ok {
			return true
		}
		if ok, _ := filepath.Match(pattern, filepath.Base(p)); ok && strings.HasPrefix(pattern, "*") {
			return true
		}
	}
	return false
}

func readIgnore(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}
