// Package workers_test keeps the worker's dependencies in check: the worker
// runs at tenant edges, far from any cluster, and shares with the rest of
// the project only the contracts in wire/ and the identity packages.
package workers_test

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/serviceradar/sync-operator/"

// forbidden are the packages the worker must not depend on, by import path
// prefix, and why.
var forbidden = []struct{ prefix, why string }{
	{module + "gateway/", "the gateway's own code; the contracts are in wire/"},
	{module + "controllers/", "the manager's reconcilers"},
	{module + "workload/", "the manager's rendering of worker objects; the bootstrap file is wire/bootstrap"},
	{module + "api/", "the CRD types; the worker gets its sources as wire/bundle"},
	{"k8s.io/", "Kubernetes packages"},
	{"sigs.k8s.io/", "Kubernetes SIG packages (controller-runtime)"},
}

// TestWorkerDependsOnNoGatewayManagerOrKubernetesPackage lists what the
// worker binary and the workers/ packages import, directly or not (their
// tests may use anything), and fails on any forbidden package, naming the
// chain of imports that reaches it.
func TestWorkerDependsOnNoGatewayManagerOrKubernetesPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`,
		module+"cmd/worker", module+"workers/...").Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	imports := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 0 {
			imports[fields[0]] = fields[1:]
		}
	}
	if len(imports) < 10 {
		t.Fatalf("go list gave %d packages: %s", len(imports), out)
	}
	var roots []string
	for p := range imports {
		if p == module+"cmd/worker" || strings.HasPrefix(p, module+"workers/") {
			roots = append(roots, p)
		}
	}
	slices.Sort(roots)
	// Each forbidden package is reported where the worker reaches it first:
	// not the hundreds of packages behind it.
	for p := range imports {
		why, bad := forbiddenWhy(p)
		if !bad {
			continue
		}
		path := chain(imports, roots, p)
		if slices.ContainsFunc(path[:len(path)-1], func(q string) bool { _, b := forbiddenWhy(q); return b }) {
			continue
		}
		t.Errorf("the worker depends on %s (%s): %s", p, why, strings.Join(path, " -> "))
	}
}

// forbiddenWhy says why the worker must not depend on package p, if it must not.
func forbiddenWhy(p string) (string, bool) {
	for _, f := range forbidden {
		if p+"/" == f.prefix || strings.HasPrefix(p, f.prefix) {
			return f.why, true
		}
	}
	return "", false
}

// chain is a shortest import chain from one of roots to target.
func chain(imports map[string][]string, roots []string, target string) []string {
	prev := map[string]string{}
	queue := slices.Clone(roots)
	for _, r := range roots {
		prev[r] = ""
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == target {
			var path []string
			for ; p != ""; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return path
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{target}
}
