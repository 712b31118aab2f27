// Package argocdhealth runs the Argo CD custom health checks of this API's
// kinds (charts/sync-operator/argocd/*.lua) the way Argo CD runs them, and
// keeps the ready-to-apply argocd-cm patch in step with the scripts.
//
// Argo CD runs a custom health check from argocd-cm in a fresh gopher-lua
// state with only the package, base, table and a restricted os library
// opened (no string or math), sets the global obj to the live object
// converted value by value to Lua, gives the script one second, and reads the
// table it returns as {status=..., message=...}. Run does the same (leaving
// out the restricted os library, which the scripts do not use), so a script
// that passes here behaves alike in Argo CD.
package argocdhealth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
	"sigs.k8s.io/yaml"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/test"
)

// Kinds are the kinds that have a health check, in the order of the patch file.
var Kinds = []string{"Tenant", "SyncService", "IntegrationSource"}

// Statuses are the health statuses Argo CD accepts from a health script; it
// turns any other into Unknown.
var Statuses = []string{"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

// PatchFile is the name of the ready-to-apply argocd-cm patch beside the scripts.
const PatchFile = "argocd-cm-patch.yaml"

// Timeout is how long Argo CD lets a health script run.
const Timeout = time.Second

// Result is what a health script returned.
type Result struct {
	// Status is the returned health status.
	Status string
	// Message is the returned message, empty when the script set none.
	Message string
}

// Dir is the folder that holds the health scripts, the patch and their README.
func Dir() string {
	return filepath.Join(test.RepoRoot(), "charts", "sync-operator", "argocd")
}

// GroupKind is Argo CD's name of a kind of this API in argocd-cm keys:
// "<group>_<kind>".
func GroupKind(kind string) string {
	return v1alpha1.GroupVersion.Group + "_" + kind
}

// ConfigKey is the argocd-cm data key that holds the health script of a kind.
func ConfigKey(kind string) string {
	return "resource.customizations.health." + GroupKind(kind)
}

// ScriptPath is the path of the health script of a kind.
func ScriptPath(kind string) string {
	return filepath.Join(Dir(), GroupKind(kind)+".lua")
}

// ReadScript reads the health script of a kind.
func ReadScript(kind string) (string, error) {
	b, err := os.ReadFile(ScriptPath(kind))
	if err != nil {
		return "", fmt.Errorf("reading the %s health script: %w", kind, err)
	}
	return string(b), nil
}

// ValidStatus reports whether Argo CD accepts s as a health status.
func ValidStatus(s string) bool {
	return slices.Contains(Statuses, s)
}

// Script is a compiled health script that can be run many times.
type Script struct {
	proto *lua.FunctionProto
}

// Compile parses and compiles a health script.
func Compile(src string) (*Script, error) {
	chunk, err := parse.Parse(strings.NewReader(src), "<string>")
	if err != nil {
		return nil, fmt.Errorf("parsing the health script: %w", err)
	}
	proto, err := lua.Compile(chunk, "<string>")
	if err != nil {
		return nil, fmt.Errorf("compiling the health script: %w", err)
	}
	return &Script{proto: proto}, nil
}

// Run compiles a health script and runs it on an object; see Script.Run.
func Run(src string, obj map[string]any) (Result, error) {
	s, err := Compile(src)
	if err != nil {
		return Result{}, err
	}
	return s.Run(obj)
}

// Run runs the script on an object as Argo CD does for a script from
// argocd-cm: obj is the object as decoded from JSON (maps, slices, strings,
// float64, int64, bool, nil). It fails when the script raises an error, runs
// out of time, or returns something Argo CD could not read as a health status.
func (s *Script) Run(obj map[string]any) (Result, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Result{}, fmt.Errorf("opening Lua library %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", ToLua(l, obj))
	l.Push(l.NewFunctionFromProto(s.proto))
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		return Result{}, fmt.Errorf("running the health script: %w", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return Result{}, fmt.Errorf("the health script returned %s, not a table", l.Get(-1).Type())
	}
	var res Result
	var err error
	if res.Status, err = stringField(ret, "status"); err != nil {
		return Result{}, err
	}
	if res.Message, err = stringField(ret, "message"); err != nil {
		return Result{}, err
	}
	return res, nil
}

// stringField reads a field that Argo CD decodes into a Go string: a Lua
// string, or nil for the empty string.
func stringField(t *lua.LTable, name string) (string, error) {
	switch v := t.RawGetString(name).(type) {
	case lua.LString:
		return string(v), nil
	case *lua.LNilType:
		return "", nil
	default:
		return "", fmt.Errorf("the health script returned a %s as %s, not a string", v.Type(), name)
	}
}

// ToLua converts a value decoded from JSON to Lua as Argo CD does: maps to
// tables with string keys, slices to sequences, numbers (including
// json.Number, which becomes a string) and strings and booleans to their Lua
// counterparts, and anything else to nil.
func ToLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(ToLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), ToLua(l, item))
		}
		return tbl
	default:
		return lua.LNil
	}
}

// patchHeader opens the generated patch file.
const patchHeader = `# Argo CD health checks for the kinds of integrations.serviceradar.io.
#
# GENERATED from the .lua files beside this file, which are the source of
# truth; test/argocdhealth fails when they differ. After editing a script run
#   go test ./test/argocdhealth/ -run TestPatchMatchesScripts -update
#
# Apply to a running Argo CD (merges into its argocd-cm, keeping other keys):
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm-patch.yaml
# or list it under "patches:" of a kustomization that renders argocd-cm.
`

// RenderPatch renders the argocd-cm patch that carries the given scripts,
// keyed by kind, in the order of Kinds.
func RenderPatch(scripts map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(patchHeader)
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n")
	for _, kind := range Kinds {
		script, ok := scripts[kind]
		if !ok {
			return nil, fmt.Errorf("no health script for %s", kind)
		}
		if !strings.HasSuffix(script, "\n") || strings.HasSuffix(script, "\n\n") {
			return nil, fmt.Errorf("the %s health script must end with exactly one newline", kind)
		}
		if strings.HasPrefix(script, " ") || strings.Contains(script, "\t") || strings.Contains(script, "\r") {
			return nil, fmt.Errorf("the %s health script must not start with a space or contain tabs or carriage returns", kind)
		}
		fmt.Fprintf(&b, "  %s: |\n", ConfigKey(kind))
		for line := range strings.Lines(script) {
			line = strings.TrimSuffix(line, "\n")
			if strings.TrimRight(line, " ") != line {
				return nil, fmt.Errorf("the %s health script has trailing spaces in %q", kind, line)
			}
			if line == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString("    " + line + "\n")
		}
	}
	return b.Bytes(), nil
}

// ConfigMap is the part of a ConfigMap that the patch file sets.
type ConfigMap struct {
	// APIVersion must be v1.
	APIVersion string `json:"apiVersion"`
	// Kind must be ConfigMap.
	Kind string `json:"kind"`
	// Metadata names the ConfigMap.
	Metadata struct {
		// Name must be argocd-cm.
		Name string `json:"name"`
	} `json:"metadata"`
	// Data holds the health scripts under their ConfigKey.
	Data map[string]string `json:"data"`
}

// ParsePatch parses an argocd-cm patch and returns the health scripts it
// carries keyed by kind. It fails on a patch that is not for argocd-cm or that
// carries keys other than the ConfigKey of each kind.
func ParsePatch(data []byte) (map[string]string, error) {
	var cm ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		return nil, fmt.Errorf("parsing the argocd-cm patch: %w", err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" {
		return nil, fmt.Errorf("the patch is for %s %s %q, not v1 ConfigMap \"argocd-cm\"", cm.APIVersion, cm.Kind, cm.Metadata.Name)
	}
	scripts := map[string]string{}
	var errs []error
	for _, kind := range Kinds {
		script, ok := cm.Data[ConfigKey(kind)]
		if !ok {
			errs = append(errs, fmt.Errorf("the patch has no key %s", ConfigKey(kind)))
			continue
		}
		scripts[kind] = script
	}
	for key := range cm.Data {
		if !slices.ContainsFunc(Kinds, func(k string) bool { return ConfigKey(k) == key }) {
			errs = append(errs, fmt.Errorf("the patch has the unexpected key %s", key))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return scripts, nil
}
