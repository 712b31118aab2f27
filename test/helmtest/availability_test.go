package helmtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// availability is what the chart renders for one component's availability:
// its PodDisruptionBudget's spec (nil when none), its pod spec's
// topologySpreadConstraints and terminationGracePeriodSeconds.
type availability struct {
	pdb    map[string]any
	spread []map[string]any
	grace  any
}

func availabilityOf(t *testing.T, objs []*unstructured.Unstructured, name string) availability {
	t.Helper()
	var a availability
	if pdb := find(objs, "PodDisruptionBudget", name); pdb != nil {
		a.pdb, _ = pdb.Object["spec"].(map[string]any)
		if pdb.GetNamespace() != namespace {
			t.Errorf("PodDisruptionBudget %s in namespace %q, want %q", name, pdb.GetNamespace(), namespace)
		}
	}
	spec := podSpec(mustFind(t, objs, "Deployment", name))
	a.spread = asMaps(spec["topologySpreadConstraints"])
	a.grace = spec["terminationGracePeriodSeconds"]
	return a
}

// selectorOf is a component's pod selector labels.
func selectorOf(component string) map[string]any {
	return map[string]any{"app.kubernetes.io/name": "sync-operator", "app.kubernetes.io/component": component}
}

// budget is a PodDisruptionBudget spec of the component with one bound.
func budget(component, bound string, value any) map[string]any {
	return map[string]any{bound: value, "unhealthyPodEvictionPolicy": "AlwaysAllow",
		"selector": map[string]any{"matchLabels": selectorOf(component)}}
}

// spread is the chart's one topology spread constraint of a component.
func spread(component, key, when string) []map[string]any {
	return []map[string]any{{"maxSkew": int64(1), "topologyKey": key, "whenUnsatisfiable": when,
		"labelSelector": map[string]any{"matchLabels": selectorOf(component)}, "matchLabelKeys": []any{"pod-template-hash"}}}
}

// TestAvailability checks the PodDisruptionBudgets, topology spread and
// termination grace the chart renders for the gateway and the manager: a
// budget and a spread only with more than one replica (a budget on one
// replica could only block node drains), maxUnavailable 1 by default, the
// gateway's pod grace above its drain grace, and the manager's leader
// election.
func TestAvailability(t *testing.T) {
	hostname := "kubernetes.io/hostname"
	for _, tc := range []struct {
		name             string
		args             []string
		gateway, manager availability
		drain            string // the gateway's --shutdown-grace
	}{{
		name:    "defaults: two gateway replicas, one manager",
		gateway: availability{pdb: budget("gateway", "maxUnavailable", int64(1)), spread: spread("gateway", hostname, "ScheduleAnyway"), grace: int64(30)},
		drain:   "25s",
	}, {
		name:    "manager HA",
		args:    []string{"--set", "manager.replicas=2"},
		gateway: availability{pdb: budget("gateway", "maxUnavailable", int64(1)), spread: spread("gateway", hostname, "ScheduleAnyway"), grace: int64(30)},
		manager: availability{pdb: budget("manager", "maxUnavailable", int64(1)), spread: spread("manager", hostname, "ScheduleAnyway")},
		drain:   "25s",
	}, {
		name:    "one gateway replica: no budget, no spread",
		args:    []string{"--set", "gateway.replicas=1"},
		gateway: availability{grace: int64(30)},
		drain:   "25s",
	}, {
		name: "overridden: minAvailable, zones required, a longer drain",
		args: []string{"--set", "gateway.replicas=3", "--set", "gateway.podDisruptionBudget.minAvailable=2",
			"--set", "gateway.topologySpread.topologyKey=topology.kubernetes.io/zone", "--set", "gateway.topologySpread.whenUnsatisfiable=DoNotSchedule",
			"--set", "gateway.shutdownGraceSeconds=50"},
		gateway: availability{pdb: budget("gateway", "minAvailable", int64(2)), spread: spread("gateway", "topology.kubernetes.io/zone", "DoNotSchedule"), grace: int64(55)},
		drain:   "50s",
	}, {
		name:    "percentages",
		args:    []string{"--set", "gateway.podDisruptionBudget.maxUnavailable=50%", "--set", "manager.replicas=3", "--set", "manager.podDisruptionBudget.minAvailable=50%"},
		gateway: availability{pdb: budget("gateway", "maxUnavailable", "50%"), spread: spread("gateway", hostname, "ScheduleAnyway"), grace: int64(30)},
		manager: availability{pdb: budget("manager", "minAvailable", "50%"), spread: spread("manager", hostname, "ScheduleAnyway")},
		drain:   "25s",
	}, {
		name: "own constraints, budgets off",
		args: []string{"--set", "gateway.podDisruptionBudget.enabled=false", "--set", "manager.replicas=2", "--set", "manager.podDisruptionBudget.enabled=false",
			"--set-json", `gateway.topologySpreadConstraints=[{"maxSkew":2,"topologyKey":"rack","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"app.kubernetes.io/component":"gateway"}}}]`,
			"--set", "manager.topologySpread.enabled=false"},
		gateway: availability{spread: []map[string]any{{"maxSkew": int64(2), "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule",
			"labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/component": "gateway"}}}}, grace: int64(30)},
		drain: "25s",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			for _, c := range []struct {
				name string
				want availability
			}{{gateway, tc.gateway}, {manager, tc.manager}} {
				got := availabilityOf(t, objs, c.name)
				if fmt.Sprint(got.pdb) != fmt.Sprint(c.want.pdb) {
					t.Errorf("%s PodDisruptionBudget spec:\n got %v\nwant %v", c.name, got.pdb, c.want.pdb)
				}
				if fmt.Sprint(got.spread) != fmt.Sprint(c.want.spread) {
					t.Errorf("%s topologySpreadConstraints:\n got %v\nwant %v", c.name, got.spread, c.want.spread)
				}
				if fmt.Sprint(got.grace) != fmt.Sprint(c.want.grace) {
					t.Errorf("%s terminationGracePeriodSeconds %v, want %v", c.name, got.grace, c.want.grace)
				}
			}
			containsAll(t, "gateway args", args(t, objs, gateway), "--shutdown-grace="+tc.drain)
			// Replicas of the manager stand by through leader election.
			containsAll(t, "manager args", args(t, objs, manager), "--leader-elect=true")
		})
	}
}

// TestManagerRBACHoldsItsLease checks that the manager's namespaced Role, in
// the release namespace where it elects its leader, lets it read, take and
// renew the coordination.k8s.io Lease.
func TestManagerRBACHoldsItsLease(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{{"defaults", nil}, {"full values", []string{"-f", fullValues}}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			role := mustFind(t, objs, "Role", manager)
			if role.GetNamespace() != namespace {
				t.Fatalf("the manager's Role is in %q, want the release namespace %q", role.GetNamespace(), namespace)
			}
			var verbs []string
			for _, rule := range asMaps(role.Object["rules"]) {
				if fmt.Sprint(rule["apiGroups"]) == "[coordination.k8s.io]" && strings.Contains(fmt.Sprint(rule["resources"]), "leases") {
					for _, v := range rule["verbs"].([]any) {
						verbs = append(verbs, fmt.Sprint(v))
					}
				}
			}
			for _, want := range []string{"get", "create", "update"} {
				if !slices.Contains(verbs, want) {
					t.Errorf("the manager's Role grants %v on leases, lacks %q", verbs, want)
				}
			}
		})
	}
}

// TestAvailabilityRefusals checks the values the chart refuses: a budget
// that would block every node drain, and manager replicas without leader
// election.
func TestAvailabilityRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"minAvailable of every gateway replica", []string{"--set", "gateway.podDisruptionBudget.minAvailable=2"}, "would block every node drain"},
		{"minAvailable above the manager's replicas", []string{"--set", "manager.replicas=2", "--set", "manager.podDisruptionBudget.minAvailable=3"}, "would block every node drain"},
		{"maxUnavailable 0", []string{"--set", "gateway.podDisruptionBudget.maxUnavailable=0"}, "maxUnavailable"},
		{"minAvailable 100%", []string{"--set", "gateway.podDisruptionBudget.minAvailable=100%"}, "minAvailable"},
		{"unknown whenUnsatisfiable", []string{"--set", "gateway.topologySpread.whenUnsatisfiable=Never"}, "whenUnsatisfiable"},
		{"no drain grace", []string{"--set", "gateway.shutdownGraceSeconds=0"}, "shutdownGraceSeconds"},
		{"manager replicas without leader election", []string{"--set", "manager.replicas=2", "--set", "manager.leaderElect=false"}, "needs manager.leaderElect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := helm(t, append([]string{"template", releaseName, chartDir, "--namespace", namespace}, tc.set...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want it refused", tc.set)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("the refusal does not say %q:\n%s", tc.want, errOut)
			}
		})
	}
}
