package argocdhealth

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// oddValues are values of every type Argo CD can hand a script, several of
// them wrong for any field they land in.
var oddValues = []any{
	nil, true, false, "", "True", "false", "Failed", "Degraded", "Offline", "abc", "3", "-1", "NaN", "1e400",
	int64(0), int64(-5), int64(3), int64(math.MaxInt64), float64(2.5), math.Inf(1), math.NaN(), json.Number("3"),
	[]any{}, []any{nil}, []any{"x", int64(1), nil, true}, map[string]any{}, map[string]any{"type": "Ready"},
	[]any{map[string]any{"type": "Ready", "status": true, "reason": []any{"x"}, "message": map[string]any{"a": int64(1)}}},
	[]any{map[string]any{"type": "Ready", "status": "False", "reason": int64(7), "message": false, "observedGeneration": "x"}},
	[]any{map[string]any{"type": "Ready", "status": "True", "observedGeneration": map[string]any{}}},
	[]any{map[string]any{"deployment": int64(1), "tenant": []any{}, "readyReplicas": "none"}, "worker"},
}

// fieldPaths are the fields the scripts read, and their parents.
var fieldPaths = [][]string{
	{"metadata"}, {"metadata", "generation"},
	{"spec"}, {"spec", "paused"}, {"spec", "serviceType"},
	{"status"}, {"status", "observedGeneration"}, {"status", "conditions"}, {"status", "phase"},
	{"status", "workers"}, {"status", "lastHeartbeatAt"}, {"status", "onboardingSecretName"},
	{"status", "lastSyncResult"}, {"status", "lastError"}, {"status", "lastSyncTime"},
}

// set sets a field at path, making the parents maps where they are not.
func set(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// conditionFields are the fields of the first condition.
var conditionFields = []string{"type", "status", "reason", "message", "observedGeneration"}

// samples are well-formed objects of a kind in several states, as maps.
func samples(t *testing.T, kind string) []map[string]any {
	t.Helper()
	var objs []runtime.Object
	switch kind {
	case "Tenant":
		objs = append(objs, baseTenant())
	case "SyncService":
		p := baseSyncService()
		p.Spec.Paused = true
		d := baseSyncService()
		starting(d)
		o := baseSyncService()
		offline(o)
		e := baseSyncService()
		onPrem(e)
		offline(e)
		e.Status.LastHeartbeatAt = nil
		objs = append(objs, baseSyncService(), p, d, o, e)
	case "IntegrationSource":
		p := baseIntegrationSource()
		p.Spec.Paused = true
		f := baseIntegrationSource()
		failed(f)
		objs = append(objs, baseIntegrationSource(), p, f)
	default:
		t.Fatalf("no samples for %s", kind)
	}
	out := make([]map[string]any, 0, len(objs))
	for _, o := range objs {
		out = append(out, toObj(t, o))
	}
	return out
}

// checkAllowed runs a script and fails unless it returns an allowed status
// without a Lua error.
func checkAllowed(t *testing.T, script *Script, what string, obj map[string]any) string {
	t.Helper()
	got, err := script.Run(obj)
	if err != nil {
		t.Fatalf("%s: %v\nobject: %#v", what, err, obj)
	}
	if !ValidStatus(got.Status) {
		t.Fatalf("%s: status %q is not one of %v\nobject: %#v", what, got.Status, Statuses, obj)
	}
	if got.Message == "" {
		t.Fatalf("%s: status %s without a message\nobject: %#v", what, got.Status, obj)
	}
	return got.Status
}

// TestMalformedObjects runs every script on objects with missing fields and
// fields of the wrong type: each must still return an allowed status.
func TestMalformedObjects(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			script := compileScript(t, kind)
			checkAllowed(t, script, "empty object", map[string]any{})
			base := samples(t, kind)
			for i := range base {
				for _, path := range fieldPaths {
					for j, v := range oddValues {
						obj := runtime.DeepCopyJSON(base[i])
						set(obj, path, v)
						checkAllowed(t, script, fmt.Sprintf("sample %d, %s = oddValues[%d]", i, strings.Join(path, "."), j), obj)
					}
					obj := runtime.DeepCopyJSON(base[i])
					deleteAt(obj, path)
					checkAllowed(t, script, fmt.Sprintf("sample %d without %s", i, strings.Join(path, ".")), obj)
				}
				for _, field := range conditionFields {
					for j, v := range oddValues {
						obj := runtime.DeepCopyJSON(base[i])
						conds, _ := obj["status"].(map[string]any)["conditions"].([]any)
						if len(conds) == 0 {
							t.Fatalf("sample %d has no conditions", i)
						}
						conds[0].(map[string]any)[field] = v
						checkAllowed(t, script, fmt.Sprintf("sample %d, conditions[0].%s = oddValues[%d]", i, field, j), obj)
					}
				}
			}
		})
	}
}

func compileScript(t *testing.T, kind string) *Script {
	t.Helper()
	src, err := ReadScript(kind)
	if err != nil {
		t.Fatal(err)
	}
	script, err := Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	return script
}

func deleteAt(m map[string]any, path []string) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	delete(m, path[len(path)-1])
}

// randomValue draws a random JSON-like value of at most the given depth,
// with keys the scripts read so that random trees reach their branches.
func randomValue(r *rand.Rand, depth int) any {
	keys := []string{"metadata", "generation", "spec", "paused", "status", "observedGeneration", "conditions",
		"type", "status", "reason", "message", "phase", "workers", "readyReplicas", "deployment", "tenant",
		"lastHeartbeatAt", "lastSyncResult", "lastError", "lastSyncTime", "serviceType", "onboardingSecretName"}
	n := 7
	if depth == 0 {
		n = 5
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return oddValues[r.IntN(len(oddValues))]
	case 3:
		return int64(r.IntN(7) - 2)
	case 4:
		return []string{"Ready", "True", "False", "Unknown", "Online", "Offline", "Degraded", "Failed", "Partial", "OnPrem"}[r.IntN(10)]
	case 5:
		s := make([]any, r.IntN(4))
		for i := range s {
			s[i] = randomValue(r, depth-1)
		}
		return s
	default:
		m := map[string]any{}
		for range r.IntN(6) {
			m[keys[r.IntN(len(keys))]] = randomValue(r, depth-1)
		}
		return m
	}
}

// mutate applies one random change to a sample: a field the scripts read,
// or a field of one of its conditions, set to a random value or deleted.
func mutate(r *rand.Rand, obj map[string]any) {
	value := randomValue(r, 2)
	if r.IntN(3) == 0 {
		st, _ := obj["status"].(map[string]any)
		conds, ok := st["conditions"].([]any)
		if ok && len(conds) > 0 {
			if c, ok := conds[r.IntN(len(conds))].(map[string]any); ok {
				field := conditionFields[r.IntN(len(conditionFields))]
				if r.IntN(4) == 0 {
					delete(c, field)
				} else {
					c[field] = value
				}
				return
			}
		}
	}
	path := fieldPaths[r.IntN(len(fieldPaths))]
	if r.IntN(4) == 0 {
		deleteAt(obj, path)
		return
	}
	set(obj, path, value)
}

// TestRandomObjects runs every script on seeded random mutations of the
// samples, and on random trees: each must return an allowed status, and the
// mutations must reach more than one branch.
func TestRandomObjects(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			script := compileScript(t, kind)
			base := samples(t, kind)
			r := rand.New(rand.NewPCG(1, uint64(len(kind))))
			seen := map[string]int{}
			for i := range 3000 {
				var obj map[string]any
				if i%5 == 4 {
					tree, ok := randomValue(r, 4).(map[string]any)
					if !ok {
						tree = map[string]any{"status": randomValue(r, 3), "spec": randomValue(r, 2), "metadata": randomValue(r, 2)}
					}
					obj = tree
				} else {
					obj = runtime.DeepCopyJSON(base[r.IntN(len(base))])
					for range 1 + r.IntN(3) {
						mutate(r, obj)
					}
				}
				seen[checkAllowed(t, script, fmt.Sprintf("random object %d", i), obj)]++
			}
			t.Logf("statuses: %v", seen)
			if len(seen) < 3 {
				t.Errorf("the random objects reached only %v", seen)
			}
		})
	}
}
