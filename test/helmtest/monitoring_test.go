package helmtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/gateway/sourcemetrics"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/workers/runner"
)

const (
	// envRequirePromtool turns a missing bin/promtool into a failure instead of a skip.
	envRequirePromtool = "SYNC_TEST_REQUIRE_PROMTOOL"
	// envPromtool overrides the promtool binary (default bin/promtool).
	envPromtool = "SYNC_TEST_PROMTOOL"
)

// monitoringValues turn on every monitoring object of the chart.
var monitoringValues = []string{"--set", "podMonitor.enabled=true", "--set", "prometheusRule.enabled=true",
	"--set", "grafanaDashboard.enabled=true", "--set", "serviceMonitor.enabled=true"}

// promtoolBin returns the promtool binary, skipping the test when it is
// missing (failing instead when SYNC_TEST_REQUIRE_PROMTOOL is set).
func promtoolBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(envPromtool)
	if bin == "" {
		bin = filepath.Join(test.RepoRoot(), "bin", "promtool")
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("promtool not found at %s (%v): build it with hack/promtool-assets.sh", bin, err)
		if os.Getenv(envRequirePromtool) != "" {
			t.Fatalf("%s; %s is set, so a missing promtool fails", msg, envRequirePromtool)
		}
		t.Skipf("%s (set %s to fail instead of skipping)", msg, envRequirePromtool)
	}
	return bin
}

// TestMonitoringObjects checks the PodMonitor, PrometheusRule and dashboard
// ConfigMap: none by default, each behind its value.
func TestMonitoringObjects(t *testing.T) {
	for _, o := range render(t) {
		if k := o.GetKind(); k == "PodMonitor" || k == "PrometheusRule" || (k == "ConfigMap" && o.GetName() == "sync-operator-dashboard") {
			t.Errorf("%s rendered by default", key(o))
		}
	}
	objs := render(t, append(monitoringValues, "--set", "podMonitor.namespaces={acme,globex}", "--set", "prometheusRule.labels.release=prom",
		"--set", "grafanaDashboard.namespace=grafana")...)
	pm := mustFind(t, objs, "PodMonitor", "sync-worker")
	if got := field(pm.Object, "spec", "selector", "matchLabels"); fmt.Sprint(got) != "map[app.kubernetes.io/managed-by:sync-operator app.kubernetes.io/name:sync-worker]" {
		t.Errorf("PodMonitor selects %v, want the worker pods' labels", got)
	}
	if got := field(pm.Object, "spec", "namespaceSelector", "matchNames"); fmt.Sprint(got) != "[acme globex]" {
		t.Errorf("PodMonitor namespaces %v", got)
	}
	eps := asMaps(field(pm.Object, "spec", "podMetricsEndpoints"))
	if len(eps) != 1 || fmt.Sprint(eps[0]["portNumber"]) != "9090" || eps[0]["path"] != "/metrics" {
		t.Errorf("PodMonitor endpoints %v, want port 9090 /metrics", eps)
	}
	pr := mustFind(t, objs, "PrometheusRule", "sync-operator")
	if pr.GetLabels()["release"] != "prom" {
		t.Errorf("PrometheusRule labels %v, want release=prom", pr.GetLabels())
	}
	var alerts []string
	for _, r := range rulesOf(t, pr) {
		alerts = append(alerts, fmt.Sprint(r["alert"]))
	}
	want := []string{"SyncSourceStale", "SyncSourceFailing", "SyncServiceOffline", "SyncRetractionHeld", "SyncEdgeCertificateExpiring", "SyncGatewayIngestErrors"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}
	cm := mustFind(t, objs, "ConfigMap", "sync-operator-dashboard")
	if cm.GetNamespace() != "grafana" || cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap in %q labels %v, want namespace grafana and grafana_dashboard=1", cm.GetNamespace(), cm.GetLabels())
	}
	raw, _ := field(cm.Object, "data", "sync-operator.json").(string)
	file, err := os.ReadFile(filepath.Join(chartDir, "files", "dashboards", "sync-operator.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(raw) != strings.TrimSpace(string(file)) {
		t.Error("the dashboard ConfigMap does not hold files/dashboards/sync-operator.json as it is")
	}
}

// rulesOf returns the rules of a PrometheusRule's groups.
func rulesOf(t *testing.T, pr *unstructured.Unstructured) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, g := range asMaps(field(pr.Object, "spec", "groups")) {
		out = append(out, asMaps(g["rules"])...)
	}
	if len(out) == 0 {
		t.Fatal("the PrometheusRule has no rules")
	}
	return out
}

// ruleFile writes the rendered PrometheusRule's spec as a Prometheus rule
// file in dir and returns its path.
func ruleFile(t *testing.T, dir string, args ...string) string {
	t.Helper()
	pr := mustFind(t, render(t, append(monitoringValues, args...)...), "PrometheusRule", "sync-operator")
	raw, err := yaml.Marshal(pr.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAlertRules runs promtool, built from the Prometheus module, on the
// chart's PrometheusRule as rendered: promtool check rules, then the unit
// tests of testdata/alerts_test.yaml (promtool test rules), which feed the
// gateway's series (from two replicas, as the chart runs it) through every
// alert, firing and not.
func TestAlertRules(t *testing.T) {
	promtool := promtoolBin(t)
	dir := t.TempDir()
	rules := ruleFile(t, dir)
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	testFile := filepath.Join(dir, "alerts_test.yaml")
	if err := os.WriteFile(testFile, tests, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", testFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("promtool test rules:\n%s", out)
}

// exportedMetrics are the metric names the gateway and the worker export,
// collected from their registries' descriptors (histograms also as their
// _bucket, _sum and _count series).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	var cs []prometheus.Collector
	cs = append(cs, server.NewMetrics().Collectors()...)
	cs = append(cs, sourcemetrics.New(sourcemetrics.Options{}).Collectors()...)
	cs = append(cs, grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram()))
	reg := prometheus.NewRegistry()
	runner.NewMetrics(reg)
	cs = append(cs, reg)
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fq.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("descriptor without a name: %s", d)
			}
			names[m[1]] = true
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+s] = true
			}
		}
	}
	if len(names) < 20 {
		t.Fatalf("collected only %d metric names", len(names))
	}
	return names
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promToken    = regexp.MustCompile(`[A-Za-z0-9_:.$]+`)
	promIdent    = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects: its
// identifiers outside strings, label matchers, ranges and grouping
// clauses that are neither functions, aggregations nor keywords.
func metricNames(expr string) []string {
	expr = promString.ReplaceAllString(expr, `""`)
	expr = promMatchers.ReplaceAllString(expr, " ")
	expr = promRange.ReplaceAllString(expr, " ")
	expr = promGrouping.ReplaceAllString(expr, " ")
	var out []string
	for _, loc := range promToken.FindAllStringIndex(expr, -1) {
		tok := expr[loc[0]:loc[1]]
		if !promIdent.MatchString(tok) || promKeywords[strings.ToLower(tok)] {
			continue // a number, a duration, a Grafana variable or a keyword
		}
		if strings.HasPrefix(strings.TrimLeft(expr[loc[1]:], " \t\n"), "(") {
			continue // a function or an aggregation
		}
		out = append(out, tok)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (tenant, le) (rate(a_bucket{x=~"$tenant"}[$__rate_interval]))`:   "a_bucket",
		`time() - max by (n) (b{s="x y"}) > 3 * max(c) unless on (n) (d == 1)`:   "b c d",
		`count(max by (t) (e{r=~"Failed|Partial"}) == 1) or vector(0) + 1e9 * f`: "e f",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// dashboardQueries returns the PromQL of every panel target and template
// variable of a Grafana dashboard, by where it is.
func dashboardQueries(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s has no expr", p.Title, tg.RefID)
			}
			out[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*[A-Za-z_]+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: %q is no label_values(<selector>, <label>)", v.Name, q.Query)
		}
		out["variable "+v.Name] = m[1]
	}
	return out
}

// grafanaVars are the dashboard's variables, replaced for PromQL's parser.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$tenant", ".*", "$namespace", ".*", "$source", ".*")

// TestDashboardQueriesNameExportedMetrics checks the shipped dashboard:
// every panel has a query, every query names only metrics that the
// gateway's and worker's registries export, and (with promtool) every
// query parses as PromQL.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "files", "dashboards", "sync-operator.json"))
	if err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	queries := dashboardQueries(t, raw)
	if len(queries) < 10 {
		t.Fatalf("the dashboard has %d queries", len(queries))
	}
	where := make([]string, 0, len(queries))
	for w := range queries {
		where = append(where, w)
	}
	sort.Strings(where)
	for _, w := range where {
		names := metricNames(queries[w])
		if len(names) == 0 {
			t.Errorf("%s names no metric: %s", w, queries[w])
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s names %s, which no registry exports: %s", w, n, queries[w])
			}
		}
	}
	// The alerting rules too.
	for _, r := range rulesOf(t, mustFind(t, render(t, monitoringValues...), "PrometheusRule", "sync-operator")) {
		for _, n := range metricNames(fmt.Sprint(r["expr"])) {
			if !exported[n] {
				t.Errorf("alert %v names %s, which no registry exports", r["alert"], n)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(test.RepoRoot(), "bin", "promtool")); err != nil && os.Getenv(envPromtool) == "" && os.Getenv(envRequirePromtool) == "" {
		t.Log("promtool is not built: the queries' PromQL syntax is not checked")
		return
	}
	// Each query as a recording rule, for promtool's parser.
	var rules []map[string]any
	for i, w := range where {
		rules = append(rules, map[string]any{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": grafanaVars.Replace(queries[w])})
	}
	doc, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtoolBin(t), "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("the dashboard's queries do not all parse (promtool check rules): %v\n%s", err, out)
	}
}
