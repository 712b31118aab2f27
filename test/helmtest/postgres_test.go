package helmtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeValues is the values block of the chart README's CloudNativePG
// example, exactly as written there.
func readmeValues(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(# values-cnpg.yaml\n.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("the chart README has no ```yaml block starting with # values-cnpg.yaml")
	}
	file := filepath.Join(t.TempDir(), "values-cnpg.yaml")
	if err := os.WriteFile(file, m[1], 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestCloudNativePGExample renders the chart with the README's
// CloudNativePG values: the DSN from the generated <cluster>-app Secret's
// uri, its CA Secret mounted and named by PGSSLROOTCERT with
// PGSSLMODE=verify-full, the pool size and statement timeout as flags.
func TestCloudNativePGExample(t *testing.T) {
	objs := render(t, "-f", readmeValues(t))
	gw := mustFind(t, objs, "Deployment", gateway)
	spec := podSpec(gw)
	for _, v := range restrictedViolations(spec) {
		t.Errorf("gateway is not restricted: %s", v)
	}
	containsAll(t, "gateway args", args(t, objs, gateway), "--postgres-max-conns=10", "--postgres-statement-timeout=2m")
	c := containers(spec)[0]
	env := asMaps(c["env"])
	if dsn := envVar(env, "SYNC_POSTGRES_DSN"); field(dsn, "valueFrom", "secretKeyRef", "name") != "mydb-app" ||
		field(dsn, "valueFrom", "secretKeyRef", "key") != "uri" {
		t.Errorf("SYNC_POSTGRES_DSN %v, want Secret mydb-app key uri", dsn)
	}
	const caFile = "/etc/sync-gateway/postgres-ca/ca.crt"
	if v := envVar(env, "PGSSLROOTCERT"); field(v, "value") != caFile {
		t.Errorf("PGSSLROOTCERT %v, want %s", v, caFile)
	}
	if v := envVar(env, "PGSSLMODE"); field(v, "value") != "verify-full" {
		t.Errorf("PGSSLMODE %v, want verify-full", v)
	}
	var mounted bool
	for _, m := range asMaps(c["volumeMounts"]) {
		if m["name"] == "postgres-ca" && m["mountPath"] == filepath.Dir(caFile) && m["readOnly"] == true {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("no read-only postgres-ca mount at %s: %v", filepath.Dir(caFile), c["volumeMounts"])
	}
	var vol map[string]any
	for _, v := range asMaps(spec["volumes"]) {
		if v["name"] == "postgres-ca" {
			vol = v
		}
	}
	items := asMaps(field(vol, "secret", "items"))
	if field(vol, "secret", "secretName") != "mydb-ca" || len(items) != 1 || items[0]["key"] != "ca.crt" || items[0]["path"] != "ca.crt" {
		t.Errorf("postgres-ca volume %v, want only ca.crt of Secret mydb-ca", vol)
	}
}

// TestPostgresDefaults: without a CA Secret nothing of TLS is rendered,
// the pool size is the default and no statement timeout is set.
func TestPostgresDefaults(t *testing.T) {
	objs := render(t)
	gwArgs := args(t, objs, gateway)
	containsAll(t, "gateway args", gwArgs, "--postgres-max-conns=10")
	if hasPrefix(gwArgs, "--postgres-statement-timeout") {
		t.Error("a statement timeout by default")
	}
	spec := podSpec(mustFind(t, objs, "Deployment", gateway))
	env := asMaps(containers(spec)[0]["env"])
	for _, name := range []string{"PGSSLROOTCERT", "PGSSLMODE"} {
		if envVar(env, name) != nil {
			t.Errorf("%s set without postgres.caSecret", name)
		}
	}
	for _, v := range asMaps(spec["volumes"]) {
		if v["name"] == "postgres-ca" {
			t.Errorf("postgres-ca volume without postgres.caSecret: %v", v)
		}
	}
}

func TestPostgresSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"sslMode that verifies nothing", []string{"--set", "postgres.sslMode=prefer"}, "sslMode"},
		{"statement timeout in words", []string{"--set", "postgres.statementTimeout=two minutes"}, "statementTimeout"},
		{"negative pool", []string{"--set", "postgres.maxConns=-1"}, "maxConns"},
		{"CA Secret as a string", []string{"--set", "postgres.caSecret=mydb-ca"}, "caSecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := helm(t, append([]string{"template", releaseName, chartDir, "--namespace", namespace}, tc.set...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want a schema error", tc.set)
			}
			if !strings.Contains(errOut, "schema") || !strings.Contains(errOut, tc.want) {
				t.Errorf("error does not come from the schema naming %q:\n%s", tc.want, errOut)
			}
		})
	}
}
