package helmtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/serviceradar/sync-operator/test"
)

var fullValues = filepath.Join("testdata", "full-values.yaml")

func TestLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"full values", []string{"-f", fullValues}},
		{"no CRDs, no DSN", []string{"--set", "crds.enabled=false", "--set", "postgres.existingSecret="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := helm(t, append([]string{"lint", "--strict", chartDir, "--namespace", namespace}, tc.args...)...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s%s", err, out, errOut)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint output:\n%s", out)
			}
		})
	}
}

const (
	manager = "sync-operator-manager"
	gateway = "sync-gateway"
)

// defaultKeys are the objects of the chart with its default values.
var defaultKeys = []string{
	"ClusterRole/sync-operator-gateway",
	"ClusterRole/sync-operator-manager",
	"ClusterRoleBinding/sync-operator-gateway",
	"ClusterRoleBinding/sync-operator-manager",
	"CustomResourceDefinition/integrationsources.integrations.serviceradar.io",
	"CustomResourceDefinition/syncservices.integrations.serviceradar.io",
	"CustomResourceDefinition/tenants.integrations.serviceradar.io",
	"Deployment/sync-gateway",
	"Deployment/sync-operator-manager",
	"PodDisruptionBudget/sync-gateway",
	"Role/sync-operator-manager",
	"RoleBinding/sync-operator-manager",
	"Service/sync-gateway",
	"Service/sync-operator-manager-metrics",
	"ServiceAccount/sync-gateway",
	"ServiceAccount/sync-operator-manager",
	"ValidatingAdmissionPolicy/sync-operator-tenant-label",
	"ValidatingAdmissionPolicyBinding/sync-operator-tenant-label",
}

func TestTemplate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, objs []*unstructured.Unstructured)
	}{{
		name: "defaults",
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if got := keys(objs); !reflect.DeepEqual(got, defaultKeys) {
				t.Errorf("objects:\n got %v\nwant %v", got, defaultKeys)
			}
			containsAll(t, "manager args", args(t, objs, manager),
				"--namespace="+namespace,
				"--gateway-address=sync-gateway."+namespace+".svc:50052",
				"--trust-domain=serviceradar.local", "--platform-slug=platform", "--leader-elect=true",
				"--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
				"--worker-image=ghcr.io/serviceradar/sync-operator:latest",
				"--gateway-service-account=sync-gateway",
				"--gateway-tls-secret=sync-gateway-tls", // no SPIRE: the manager issues the gateway's certificate
				"--gateway-trust=operator",              // and the gateway trusts the operator's root CA
				"--spire-class-name=spire-mgmt-spire")
			if hasPrefix(args(t, objs, manager), "--disable-platform-sync") {
				t.Error("platform sync is disabled by default")
			}
			gwArgs := args(t, objs, gateway)
			containsAll(t, "gateway args", gwArgs, "--listen=:50052", "--metrics-bind-address=:9090",
				"--cert-file=/etc/sync-gateway/tls/tls.crt", "--key-file=/etc/sync-gateway/tls/tls.key",
				"--ca-file=/etc/sync-gateway/tls/ca.crt")
			if hasPrefix(gwArgs, "--workload-api-addr") {
				t.Error("gateway uses the Workload API without spire.enabled")
			}
			gw := mustFind(t, objs, "Deployment", gateway)
			if r := field(gw.Object, "spec", "replicas"); fmt.Sprint(r) != "2" {
				t.Errorf("gateway replicas %v, want 2", r)
			}
			env := asMaps(containers(podSpec(gw))[0]["env"])
			if dsn := envVar(env, "SYNC_POSTGRES_DSN"); len(env) != 2 ||
				field(dsn, "valueFrom", "secretKeyRef", "name") != "sync-postgres" ||
				field(dsn, "valueFrom", "secretKeyRef", "key") != "dsn" {
				t.Errorf("gateway env %v, want SYNC_POSTGRES_DSN from Secret sync-postgres key dsn, and GOMEMLIMIT", env)
			}
			for _, d := range []string{gateway, manager} {
				e := envVar(asMaps(containers(podSpec(mustFind(t, objs, "Deployment", d)))[0]["env"]), "GOMEMLIMIT")
				if field(e, "valueFrom", "resourceFieldRef", "resource") != "limits.memory" {
					t.Errorf("%s: GOMEMLIMIT %v, want the container's memory limit", d, e)
				}
			}
			vols := asMaps(podSpec(gw)["volumes"])
			if len(vols) != 1 || field(vols[0], "secret", "secretName") != "sync-gateway-tls" {
				t.Errorf("gateway volumes %v, want the Secret sync-gateway-tls", vols)
			}
			svc := mustFind(t, objs, "Service", gateway)
			ports := map[string]any{}
			for _, p := range asMaps(field(svc.Object, "spec", "ports")) {
				ports[p["name"].(string)] = p["port"]
			}
			if fmt.Sprint(ports) != "map[grpc:50052 metrics:9090]" {
				t.Errorf("gateway Service ports %v", ports)
			}
			for _, o := range objs {
				if o.GetKind() != "CustomResourceDefinition" {
					continue
				}
				a := o.GetAnnotations()
				if a["helm.sh/resource-policy"] != "keep" || a["argocd.argoproj.io/sync-wave"] != "-1" {
					t.Errorf("CRD %s annotations %v, want resource-policy keep and sync-wave -1", o.GetName(), a)
				}
			}
		},
	}, {
		name: "full values",
		args: []string{"-f", fullValues},
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if n := count(objs, "ServiceMonitor"); n != 2 {
				t.Errorf("%d ServiceMonitors, want 2", n)
			}
			if n := count(objs, "NetworkPolicy"); n != 2 {
				t.Errorf("%d NetworkPolicies, want 2", n)
			}
			gw := mustFind(t, objs, "Deployment", gateway)
			if r := field(gw.Object, "spec", "replicas"); fmt.Sprint(r) != "3" {
				t.Errorf("gateway replicas %v, want 3", r)
			}
			gwArgs := args(t, objs, gateway)
			containsAll(t, "gateway args", gwArgs,
				"--workload-api-addr=unix:///spiffe-workload-api/spire-agent.sock",
				"--spiffe-id=spiffe://example.org/gateway/root/default/sync-gateway",
				"--edge-ca-file=/etc/sync-gateway/edge-ca/ca.crt", "--trust-domain=example.org",
				"--platform-slug=root", "--heartbeat-interval=20s")
			if hasPrefix(gwArgs, "--cert-file") {
				t.Error("gateway reads PEM files with spire.enabled")
			}
			var csi bool
			for _, v := range asMaps(podSpec(gw)["volumes"]) {
				if field(v, "csi", "driver") == "csi.spiffe.io" && field(v, "csi", "readOnly") == true {
					csi = true
				}
			}
			if !csi {
				t.Errorf("gateway has no read-only csi.spiffe.io volume: %v", podSpec(gw)["volumes"])
			}
			env := asMaps(containers(podSpec(gw))[0]["env"])
			if field(envVar(env, "SYNC_POSTGRES_DSN"), "valueFrom", "secretKeyRef", "name") != "devices-db" {
				t.Errorf("gateway env %v, want the DSN from Secret devices-db", env)
			}
			if hasPrefix(args(t, objs, manager), "--gateway-tls-secret") {
				t.Error("the manager issues a gateway certificate although SPIRE does")
			}
			if n := count(objs, "ClusterSPIFFEID"); n != 1 {
				t.Errorf("%d ClusterSPIFFEIDs, want the gateway's", n)
			}
			containsAll(t, "manager args", args(t, objs, manager), "--disable-platform-sync", "--gateway-trust=spire",
				"--trust-domain=example.org", "--watch-namespaces=tenant-a,tenant-b",
				"--gateway-server-name=gateway.example.org", "--kube-api-qps=20", "--kube-api-burst=40", "--svid-lifetime=12h",
				"--worker-image=registry.example.com/serviceradar/sync-operator:v1.2.3-worker")
			img := containers(podSpec(mustFind(t, objs, "Deployment", manager)))[0]["image"]
			if img != "registry.example.com/serviceradar/sync-operator:v1.2.3" {
				t.Errorf("manager image %v", img)
			}
			for _, o := range objs {
				if o.GetKind() == "CustomResourceDefinition" {
					if _, ok := o.GetAnnotations()["helm.sh/resource-policy"]; ok {
						t.Errorf("CRD %s is kept with crds.keep=false", o.GetName())
					}
				}
			}
		},
	}, {
		name: "without CRDs or DSN",
		args: []string{"--set", "crds.enabled=false", "--set", "postgres.existingSecret="},
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			if n := count(objs, "CustomResourceDefinition"); n != 0 {
				t.Errorf("%d CRDs with crds.enabled=false", n)
			}
			if env := asMaps(containers(podSpec(mustFind(t, objs, "Deployment", gateway)))[0]["env"]); envVar(env, "SYNC_POSTGRES_DSN") != nil {
				t.Errorf("gateway env %v without postgres.existingSecret", env)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			workloads := 0
			for _, o := range objs {
				spec := podSpec(o)
				if spec == nil {
					continue
				}
				workloads++
				for _, v := range restrictedViolations(spec) {
					t.Errorf("%s is not restricted: %s", key(o), v)
				}
			}
			if workloads != 2 {
				t.Errorf("%d workloads, want 2 (manager and gateway)", workloads)
			}
			tc.check(t, objs)
		})
	}
}

// TestRBACKeepsSecretsNarrow checks the rendered RBAC: the gateway has no
// Secret access of its own (the manager grants it the referenced credentials
// per namespace, by name); the manager manages those grants by name only and
// patches no namespace but its own.
func TestRBACKeepsSecretsNarrow(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{{"defaults", nil}, {"full values", []string{"-f", fullValues}}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			rules := func(kind, name string) []map[string]any {
				return asMaps(mustFind(t, objs, kind, name).Object["rules"])
			}
			grants := func(rule map[string]any, resource string) bool {
				for _, r := range rule["resources"].([]any) {
					if r == resource || r == "*" {
						return true
					}
				}
				return false
			}
			for _, rule := range rules("ClusterRole", "sync-operator-gateway") {
				if grants(rule, "secrets") {
					t.Errorf("the gateway's ClusterRole grants Secrets: %v", rule)
				}
			}
			for _, rule := range rules("ClusterRole", manager) {
				if grants(rule, "namespaces") && fmt.Sprint(rule["verbs"]) != "[get list watch]" {
					t.Errorf("the manager's ClusterRole may write namespaces: %v", rule)
				}
				if (grants(rule, "roles") || grants(rule, "rolebindings")) && fmt.Sprint(rule["verbs"]) != "[create]" &&
					fmt.Sprint(rule["resourceNames"]) != "[sync-operator-gateway-credentials]" {
					t.Errorf("the manager's ClusterRole writes Roles or RoleBindings beyond the gateway's grants: %v", rule)
				}
			}
			var patchesNS bool
			for _, rule := range rules("Role", manager) {
				patchesNS = patchesNS || (grants(rule, "namespaces") && fmt.Sprint(rule["verbs"]) == "[patch]")
			}
			if role := mustFind(t, objs, "Role", manager); !patchesNS || role.GetNamespace() != namespace {
				t.Errorf("the manager's Role in %q does not patch its own namespace: %v", role.GetNamespace(), role.Object["rules"])
			}
		})
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want []string // all in the error
	}{
		{"replicas not an integer", []string{"--set-string", "gateway.replicas=two"}, []string{"gateway", "replicas", "string"}},
		{"negative replicas", []string{"--set", "manager.replicas=-1"}, []string{"manager", "replicas"}},
		{"unknown value", []string{"--set", "gateway.replica=3"}, []string{"gateway", "replica"}},
		{"pull policy", []string{"--set", "image.pullPolicy=Sometimes"}, []string{"pullPolicy"}},
		{"port out of range", []string{"--set", "gateway.metricsPort=70000"}, []string{"metricsPort"}},
		{"trust domain", []string{"--set", "trustDomain=Example.ORG"}, []string{"trustDomain"}},
		{"spire not a boolean", []string{"--set-string", "spire.enabled=yes"}, []string{"spire", "enabled"}},
		{"service type", []string{"--set", "gateway.service.type=External"}, []string{"service", "type"}},
		// Workers accept only a gateway ID (component type gateway) as their server.
		{"gateway SPIFFE ID of another component", []string{"--set", "spire.spiffeID=spiffe://example.org/ns/serviceradar-system/sa/sync-gateway"}, []string{"spire", "spiffeID"}},
		{"SPIRE class with a space", []string{"--set", "spire.className=spire mgmt"}, []string{"spire", "className"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := helm(t, append([]string{"template", releaseName, chartDir, "--namespace", namespace}, tc.set...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want a schema error", tc.set)
			}
			if !strings.Contains(errOut, "schema") {
				t.Errorf("error is not from values.schema.json:\n%s", errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("error does not name %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// generated are the files `make manifests` writes, and the copies the chart
// and kustomize keep of them (each must stay byte-identical).
var generated = map[string][]string{
	"config/rbac/role.yaml":         {"charts/sync-operator/files/rbac/role.yaml", "config/manager/role.yaml"},
	"config/rbac/gateway/role.yaml": {"charts/sync-operator/files/rbac/gateway/role.yaml", "config/gateway/role.yaml"},
	"config/crd/bases/integrations.serviceradar.io_integrationsources.yaml": {
		"charts/sync-operator/files/crds/integrations.serviceradar.io_integrationsources.yaml"},
	"config/crd/bases/integrations.serviceradar.io_syncservices.yaml": {
		"charts/sync-operator/files/crds/integrations.serviceradar.io_syncservices.yaml"},
	"config/crd/bases/integrations.serviceradar.io_tenants.yaml": {
		"charts/sync-operator/files/crds/integrations.serviceradar.io_tenants.yaml"},
}

func TestCopiesOfGeneratedFiles(t *testing.T) {
	root := test.RepoRoot()
	crds, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crds {
		rel, _ := filepath.Rel(root, c)
		if _, ok := generated[rel]; !ok {
			t.Errorf("%s has no copy in charts/sync-operator/files/crds: cp %s charts/sync-operator/files/crds/", rel, rel)
		}
	}
	for src, copies := range generated {
		want, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range copies {
			got, err := os.ReadFile(filepath.Join(root, c))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s differs from the generated %s (err %v): cp %s %s", c, src, err, src, c)
			}
		}
	}
}

func TestRBACAndCRDsMatchGenerated(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{{"defaults", nil}, {"full values", []string{"-f", fullValues}}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			for _, file := range []string{"config/rbac/role.yaml", "config/rbac/gateway/role.yaml"} {
				for _, want := range readObjects(t, file) {
					got := mustFind(t, objs, want.GetKind(), want.GetName())
					if !reflect.DeepEqual(got.Object["rules"], want.Object["rules"]) {
						t.Errorf("%s rules differ from %s:\n got %v\nwant %v", key(got), file, got.Object["rules"], want.Object["rules"])
					}
					if want.GetNamespace() != "" && got.GetNamespace() != namespace {
						t.Errorf("%s in namespace %q, want %q", key(got), got.GetNamespace(), namespace)
					}
				}
			}
			for _, b := range []struct{ role, sa string }{{manager, manager}, {"sync-operator-gateway", gateway}} {
				crb := mustFind(t, objs, "ClusterRoleBinding", b.role)
				subj := asMaps(crb.Object["subjects"])
				if field(crb.Object, "roleRef", "name") != b.role || len(subj) != 1 ||
					subj[0]["name"] != b.sa || subj[0]["namespace"] != namespace {
					t.Errorf("ClusterRoleBinding %s binds %v to %v", b.role, crb.Object["roleRef"], subj)
				}
			}
			crdFiles, err := filepath.Glob(filepath.Join(test.RepoRoot(), "config", "crd", "bases", "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range crdFiles {
				rel, _ := filepath.Rel(test.RepoRoot(), f)
				for _, want := range readObjects(t, rel) {
					got := mustFind(t, objs, "CustomResourceDefinition", want.GetName())
					if !reflect.DeepEqual(got.Object["spec"], want.Object["spec"]) {
						t.Errorf("CRD %s spec differs from %s", want.GetName(), rel)
					}
				}
			}
		})
	}
}
