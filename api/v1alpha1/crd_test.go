package v1alpha1_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	var err error
	env, err = kubetest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("envtest control plane with CRDs started in %s\n", env.StartupTime.Round(time.Millisecond))
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// seq gives each test object a unique name, since tenants are cluster-scoped.
var seq int

// render fills the placeholders of a YAML template: {{ns}} is the test's tenant
// namespace and {{name}} a unique object name.
func render(t *testing.T, tmpl, ns string) *unstructured.Unstructured {
	t.Helper()
	seq++
	s := strings.NewReplacer("{{ns}}", ns, "{{name}}", fmt.Sprintf("obj-%d", seq)).Replace(tmpl)
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(s), &obj.Object); err != nil {
		t.Fatalf("test template is not YAML: %v\n%s", err, s)
	}
	return obj
}

func tenantNamespace(t *testing.T, slug string) string {
	t.Helper()
	ns, err := env.TenantNamespace(context.Background(), "crd", slug)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// Minimal valid objects that the cases below break one field at a time.
const (
	validTenant = `
apiVersion: integrations.serviceradar.io/v1alpha1
kind: Tenant
metadata: {name: "{{name}}"}
spec: {slug: "{{name}}"}`
	validSyncService = `
apiVersion: integrations.serviceradar.io/v1alpha1
kind: SyncService
metadata: {name: "{{name}}", namespace: "{{ns}}"}
spec: {serviceType: SaaS}`
	validArmis = `
apiVersion: integrations.serviceradar.io/v1alpha1
kind: IntegrationSource
metadata: {name: "{{name}}", namespace: "{{ns}}"}
spec:
  type: armis
  endpoint: https://armis.example
  credentialsSecretRef: {name: armis}
  syncServiceRef: {name: sync}
  queries: [{label: all, query: "in:devices"}]`
	validFaker = `
apiVersion: integrations.serviceradar.io/v1alpha1
kind: IntegrationSource
metadata: {name: "{{name}}", namespace: "{{ns}}"}
spec:
  type: faker
  syncServiceRef: {name: sync}`
)

// set applies a JSON merge patch given as YAML to an object template.
func set(tmpl, patchYAML string) string {
	return tmpl + "\n#patch\n" + patchYAML
}

// build renders a template and applies the merge patch that set appended.
func build(t *testing.T, tmpl, ns string) *unstructured.Unstructured {
	t.Helper()
	base, patch, _ := strings.Cut(tmpl, "\n#patch\n")
	obj := render(t, base, ns)
	if patch == "" {
		return obj
	}
	var p map[string]any
	if err := yaml.Unmarshal([]byte(patch), &p); err != nil {
		t.Fatalf("test patch is not YAML: %v", err)
	}
	merge(obj.Object, p)
	return obj
}

// merge is a JSON merge patch (RFC 7386): null deletes a key.
func merge(dst, patch map[string]any) {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			dv, ok := dst[k].(map[string]any)
			if !ok {
				dv = map[string]any{}
				dst[k] = dv
			}
			merge(dv, pv)
		default:
			dst[k] = v
		}
	}
}

func TestInvalidObjectsAreRefusedNamingTheField(t *testing.T) {
	ns := tenantNamespace(t, "acme")
	cases := []struct {
		name  string
		obj   string
		field string // the field path the error must name
		msg   string // a part of the message
	}{
		{"platform slug on a non-platform tenant", set(validTenant, "spec: {slug: platform}"), "spec.slug", "reserved for the platform tenant"},
		{"upper-case slug", set(validTenant, "spec: {slug: Acme}"), "spec.slug", "should match"},
		{"slug longer than a DNS label", set(validTenant, "spec: {slug: "+strings.Repeat("a", 64)+"}"), "spec.slug", "Too long"},
		// Issue 14: tenant_<slug> longer than 63 bytes is cut by PostgreSQL,
		// so slugs sharing 56 characters shared a schema.
		{"slug whose schema name would be cut by PostgreSQL", set(validTenant, "spec: {slug: "+strings.Repeat("a", 57)+"}"), "spec.slug", "may not be more than 32"},
		{"slug one character over the limit", set(validTenant, "spec: {slug: "+strings.Repeat("a", 33)+"}"), "spec.slug", "Too long"},
		{"unknown tenant deletion policy", set(validTenant, "spec: {deletionPolicy: Delete}"), "spec.deletionPolicy", "Unsupported value"},
		{"sync service name that is not a DNS label", strings.Replace(validSyncService, `name: "{{name}}"`, `name: "a.{{name}}"`, 1), "SyncService", "must be a DNS label"},
		{"sync service name longer than a label value", strings.Replace(validSyncService, `name: "{{name}}"`, `name: "`+strings.Repeat("s", 64)+`"`, 1), "SyncService", "must be a DNS label"},
		{"tenant without slug", set(validTenant, "spec: {slug: null}"), "spec.slug", "Required"},
		{"unknown service type", set(validSyncService, "spec: {serviceType: Cloud}"), "spec.serviceType", "Unsupported value"},
		{"on-prem platform sync", set(validSyncService, "spec: {serviceType: OnPrem, platform: true}"), "spec.platform", "serviceType SaaS"},
		{"worker image on on-prem sync", set(validSyncService, "spec: {serviceType: OnPrem, image: 'x:1'}"), "spec.serviceType", "apply only to serviceType SaaS"},
		{"partition with dots", set(validSyncService, "spec: {partition: a.b}"), "spec.partition", "should match"},
		{"edge gateway address on a SaaS sync", set(validSyncService, "spec: {gatewayAddress: 'sync.example.com:443'}"), "spec.gatewayAddress", "applies only to serviceType OnPrem"},
		{"edge gateway address without a port", set(validSyncService, "spec: {serviceType: OnPrem, gatewayAddress: 'sync.example.com'}"), "spec.gatewayAddress", "must be host:port"},
		{"edge gateway address that is a URL", set(validSyncService, "spec: {serviceType: OnPrem, gatewayAddress: 'https://sync.example.com:443'}"), "spec.gatewayAddress", "must be host:port"},
		{"unknown identity provider", set(validSyncService, "spec: {identity: {provider: vault}}"), "spec.identity.provider", "Unsupported value"},
		{"unknown capability", set(validSyncService, "spec: {capabilities: [servicenow]}"), "spec.capabilities[0]", "Unsupported value"},
		{"unknown integration type", set(validArmis, "spec: {type: servicenow}"), "spec.type", "Unsupported value"},
		{"armis without endpoint", set(validArmis, "spec: {endpoint: null}"), "spec.endpoint", "endpoint is required"},
		{"armis without credentials", set(validArmis, "spec: {credentialsSecretRef: null}"), "spec.credentialsSecretRef", "credentialsSecretRef is required"},
		{"netbox without endpoint", set(validArmis, "spec: {type: netbox, endpoint: null}"), "spec.endpoint", "endpoint is required"},
		{"armis without queries", set(validArmis, "spec: {queries: null}"), "spec.queries", "at least one query"},
		{"endpoint that is not an http URL", set(validArmis, "spec: {endpoint: 'ftp://armis.example'}"), "spec.endpoint", "http or https URL"},
		{"endpoint that is not a URL", set(validArmis, "spec: {endpoint: 'armis example'}"), "spec.endpoint", "http or https URL"},
		{"page size zero", set(validArmis, "spec: {pageSize: 0}"), "spec.pageSize", "greater than or equal to 1"},
		{"page size above armis maximum", set(validArmis, "spec: {pageSize: 5001}"), "spec.pageSize", "less than or equal to 5000"},
		{"page size above netbox maximum", set(validArmis, "spec: {type: netbox, pageSize: 2000}"), "spec.pageSize", "at most 1000"},
		{"interval that is not a duration", set(validFaker, "spec: {pollInterval: '5 minutes'}"), "spec.pollInterval", "duration"},
		{"poll interval too short", set(validFaker, "spec: {pollInterval: 10s}"), "spec.pollInterval", "between 30s and 24h"},
		{"poll interval too long", set(validFaker, "spec: {pollInterval: 25h}"), "spec.pollInterval", "between 30s and 24h"},
		{"discovery shorter than poll", set(validFaker, "spec: {pollInterval: 2h, discoveryInterval: 1h}"), "spec.discoveryInterval", "not be shorter than pollInterval"},
		{"blacklist entry with a bad prefix", set(validFaker, "spec: {networkBlacklist: [10.0.0.0/33]}"), "spec.networkBlacklist[0]", "must be a CIDR"},
		{"blacklist entry that is not a CIDR", set(validFaker, "spec: {networkBlacklist: [10.0.0.1]}"), "spec.networkBlacklist[0]", "must be a CIDR"},
		{"sweep network that is not a CIDR", set(validFaker, "spec: {sweep: {networks: [lan]}}"), "spec.sweep.networks[0]", "must be a CIDR"},
		{"sweep port out of range", set(validFaker, "spec: {sweep: {ports: [70000]}}"), "spec.sweep.ports[0]", "less than or equal to 65535"},
		{"unknown sweep mode", set(validFaker, "spec: {sweep: {modes: [udp]}}"), "spec.sweep.modes[0]", "Unsupported value"},
		{"faker settings on armis", set(validArmis, "spec: {faker: {devices: 10}}"), "spec.faker", "only allowed when type is faker"},
		{"faker with no devices", set(validFaker, "spec: {faker: {devices: 0}}"), "spec.faker.devices", "greater than or equal to 1"},
		{"faker churn above 100 percent", set(validFaker, "spec: {faker: {churnPercent: 101}}"), "spec.faker.churnPercent", "less than or equal to 100"},
		{"unknown deletion policy", set(validFaker, "spec: {deletionPolicy: Delete}"), "spec.deletionPolicy", "Unsupported value"},
		{"missing sync service reference", set(validFaker, "spec: {syncServiceRef: null}"), "spec.syncServiceRef", "Required"},
		{"bad secret name", set(validArmis, "spec: {credentialsSecretRef: {name: Bad_Name}}"), "spec.credentialsSecretRef.name", "should match"},
		{"query without label", set(validArmis, "spec: {queries: [{query: 'in:devices'}]}"), "spec.queries[0].label", "Required"},
		{"netbox settings on armis", set(validArmis, "spec: {netbox: {excludeVirtualMachines: true}}"), "spec.netbox", "only allowed when type is netbox"},
		{"unknown netbox availability", set(validArmis, "spec: {type: netbox, netbox: {statusAvailability: {active: Perhaps}}}"), "spec.netbox.statusAvailability.active", "Unsupported value"},
		{"netbox status that is no status value", set(validArmis, "spec: {type: netbox, netbox: {statusAvailability: {'Active Now': Available}}}"), "spec.netbox.statusAvailability", "keys must be NetBox status values"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := build(t, tc.obj, ns)
			err := env.Client.Create(context.Background(), obj)
			if err == nil {
				t.Fatalf("%s %s was accepted", obj.GetKind(), obj.GetName())
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error does not name %q with %q:\n%v", tc.field, tc.msg, err)
			}
		})
	}
}

func TestTransitionRules(t *testing.T) {
	ns := tenantNamespace(t, "acme")
	cases := []struct {
		name  string
		obj   string
		patch string // a JSON merge patch
		field string
		msg   string
	}{
		{"slug is immutable", validTenant, `{"spec":{"slug":"renamed"}}`, "spec.slug", "slug is immutable"},
		{"platform flag is immutable", validTenant, `{"spec":{"platform":true}}`, "spec.platform", "platform is immutable"},
		{"service type is immutable", validSyncService, `{"spec":{"serviceType":"OnPrem"}}`, "spec.serviceType", "serviceType is immutable"},
		{"integration type is immutable", validArmis, `{"spec":{"type":"netbox"}}`, "spec.type", "type is immutable"},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := build(t, tc.obj, ns)
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatalf("creating the valid object: %v", err)
			}
			err := env.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(tc.patch)))
			if err == nil || !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error does not name %q with %q:\n%v", tc.field, tc.msg, err)
			}
		})
	}
}

func TestMutableFieldsCanChange(t *testing.T) {
	ns := tenantNamespace(t, "acme")
	ctx := context.Background()
	obj := build(t, validArmis, ns)
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	patch := `{"spec":{"endpoint":"https://other.armis.example","pollInterval":"30m","paused":true,"deletionPolicy":"Retract"}}`
	if err := env.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatalf("changing mutable fields was refused: %v", err)
	}
}

func TestDefaultsAreApplied(t *testing.T) {
	ns := tenantNamespace(t, "acme")
	ctx := context.Background()

	tenant := &v1alpha1.Tenant{}
	tenant.Name, tenant.Spec.Slug = "defaults-tenant", "defaults-tenant"
	ss := &v1alpha1.SyncService{}
	ss.Name, ss.Namespace = "defaults", ns
	src := &v1alpha1.IntegrationSource{}
	src.Name, src.Namespace = "defaults", ns
	src.Spec.Type = v1alpha1.IntegrationFaker
	src.Spec.SyncServiceRef.Name = "defaults"
	src.Spec.Faker = &v1alpha1.FakerSpec{}
	src.Spec.Sweep = &v1alpha1.SweepSpec{Enabled: true}
	for _, o := range []client.Object{tenant, ss, src} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("creating %T: %v", o, err)
		}
	}
	checks := []struct {
		field string
		got   any
		want  any
	}{
		{"tenant spec.platform", tenant.Spec.Platform, false},
		{"tenant spec.deletionPolicy", tenant.Spec.DeletionPolicy, v1alpha1.TenantDeletionRetain},
		{"syncservice spec.serviceType", ss.Spec.ServiceType, v1alpha1.ServiceTypeSaaS},
		{"syncservice spec.partition", ss.Spec.Partition, "default"},
		{"syncservice spec.identity.provider", ss.Spec.Identity.Provider, v1alpha1.IdentityProviderSPIRE},
		{"syncservice spec.platform", ss.Spec.Platform, false},
		{"source spec.partition", src.Spec.Partition, "default"},
		{"source spec.pollInterval", durationString(src.Spec.PollInterval), "5m0s"},
		{"source spec.discoveryInterval", durationString(src.Spec.DiscoveryInterval), "1h0m0s"},
		{"source spec.pageSize (unset: the type's default of wire/pagesize)", src.Spec.PageSize, int32(0)},
		{"source spec.deletionPolicy", src.Spec.DeletionPolicy, v1alpha1.DeletionPolicyRetain},
		{"source spec.faker.devices", src.Spec.Faker.Devices, int32(1000)},
		{"source spec.faker.churnPercent", src.Spec.Faker.ChurnPercent, int32(5)},
		{"source spec.faker.seed", src.Spec.Faker.Seed, int64(1)},
		{"source spec.sweep.modes", fmt.Sprint(src.Spec.Sweep.Modes), "[icmp]"},
		{"source spec.sweep.interval", durationString(src.Spec.Sweep.Interval), "5m0s"},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s defaulted to %v, want %v", c.field, c.got, c.want)
		}
	}
}

func durationString(d *metav1.Duration) string {
	if d == nil {
		return "<nil>"
	}
	return d.Duration.String()
}

// sampleOrder creates dependencies before the objects that use them.
var sampleOrder = map[string]int{"Namespace": 0, "Secret": 1, "Tenant": 2, "SyncService": 3, "IntegrationSource": 4}

func TestSamplesAreAccepted(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(test.RepoRoot(), "config", "samples")
	var kustomization struct {
		Resources []string `json:"resources"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &kustomization); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) != len(kustomization.Resources)+1 {
		t.Fatalf("config/samples has %d YAML files but kustomization.yaml lists %d", len(files)-1, len(kustomization.Resources))
	}
	var objs [5][]*unstructured.Unstructured
	kinds := map[string]int{}
	for _, f := range kustomization.Resources {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			order, ok := sampleOrder[obj.GetKind()]
			if !ok {
				t.Fatalf("%s: unexpected kind %s", f, obj.GetKind())
			}
			objs[order] = append(objs[order], obj)
			kinds[obj.GetKind()]++
		}
	}
	for _, group := range objs {
		for _, obj := range group {
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Errorf("sample %s %s/%s was refused: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
			}
		}
	}
	// platform and regular tenant, platform and OnPrem sync, armis/netbox/faker sources.
	for kind, want := range map[string]int{"Tenant": 2, "SyncService": 2, "IntegrationSource": 3, "Secret": 2} {
		if kinds[kind] != want {
			t.Errorf("samples hold %d %s objects, want %d", kinds[kind], kind, want)
		}
	}
}

// walk calls fn for every property of a schema, with its path.
func walk(path string, s apiextensionsv1.JSONSchemaProps, fn func(string, apiextensionsv1.JSONSchemaProps)) {
	for name, p := range s.Properties {
		fn(path+"."+name, p)
		walk(path+"."+name, p, fn)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walk(path+"[]", *s.Items.Schema, fn)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		walk(path+"{}", *s.AdditionalProperties.Schema, fn)
	}
}

func TestEveryFieldIsDocumented(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"tenants", "syncservices", "integrationsources"} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name + "." + v1alpha1.GroupVersion.Group}, crd); err != nil {
			t.Fatalf("CRD %s is not installed: %v", name, err)
		}
		if got := crd.Spec.Names.Categories; len(got) != 1 || got[0] != "serviceradar" {
			t.Errorf("%s categories = %v, want [serviceradar]", name, got)
		}
		if len(crd.Spec.Names.ShortNames) == 0 {
			t.Errorf("%s has no short name", name)
		}
		v := crd.Spec.Versions[0]
		if v.Subresources == nil || v.Subresources.Status == nil {
			t.Errorf("%s has no status subresource", name)
		}
		root := *v.Schema.OpenAPIV3Schema
		for _, top := range []string{"spec", "status"} {
			walk(name+"."+top, root.Properties[top], func(path string, p apiextensionsv1.JSONSchemaProps) {
				if strings.TrimSpace(p.Description) == "" {
					t.Errorf("%s has no description", path)
				}
			})
		}
	}
}

func TestKubectlExplainDescribesEverySpecField(t *testing.T) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: "integrationsources.integrations.serviceradar.io"}, crd); err != nil {
		t.Fatal(err)
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	var out string
	var err error
	// The API server publishes a new CRD's OpenAPI a moment after it is established.
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err = env.Kubectl("explain", "integrationsource.spec")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range spec.Properties {
		// kubectl prints "  <name>\t<type>" then the description, indented.
		re := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + `\s.*\n((?:    .*\n|  enum: .*\n)+)`)
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("kubectl explain does not list spec.%s:\n%s", name, out)
			continue
		}
		firstWords := strings.Fields(p.Description)[:3]
		if !strings.Contains(strings.Join(strings.Fields(m[1]), " "), strings.Join(firstWords, " ")) {
			t.Errorf("kubectl explain shows no description for spec.%s:\n%s", name, m[0])
		}
	}
}

func TestCategoryListsAllKindsWithColumns(t *testing.T) {
	ns := tenantNamespace(t, "acme")
	ctx := context.Background()
	for _, tmpl := range []string{validSyncService, validFaker} {
		if err := env.Client.Create(ctx, build(t, tmpl, ns)); err != nil {
			t.Fatal(err)
		}
	}
	tenant := build(t, validTenant, "")
	if err := env.Client.Create(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl("get", "serviceradar", "-A")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^NAMESPACE\s+NAME\s+SLUG\s+PLATFORM\s+TENANTID\s+READY\s+AGE$`),
		regexp.MustCompile(`(?m)^NAMESPACE\s+NAME\s+TYPE\s+PLATFORM\s+PHASE\s+WORKERS\s+LAST HEARTBEAT\s+READY\s+AGE$`),
		regexp.MustCompile(`(?m)^NAMESPACE\s+NAME\s+TYPE\s+SYNCSERVICE\s+SYNCED\s+DEVICES\s+LAST SYNC\s+READY\s+AGE$`),
		regexp.MustCompile(`(?m)^\s+tenant\.integrations\.serviceradar\.io/` + tenant.GetName() + `\s+` + tenant.GetName() + `\s+false`),
		regexp.MustCompile(`(?m)^` + ns + `\s+syncservice\.integrations\.serviceradar\.io/obj-\d+\s+SaaS\s+false`),
		regexp.MustCompile(`(?m)^` + ns + `\s+integrationsource\.integrations\.serviceradar\.io/obj-\d+\s+faker\s+sync`),
	} {
		if !want.MatchString(out) {
			t.Errorf("`kubectl get serviceradar -A` lacks %s:\n%s", want, out)
		}
	}
	for _, short := range []string{"tn", "ss", "isrc"} {
		if _, err := env.Kubectl("get", short, "-A"); err != nil {
			t.Errorf("short name %s: %v", short, err)
		}
	}
}
