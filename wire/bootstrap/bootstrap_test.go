package bootstrap_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/wire/bootstrap"
)

func TestParseNamesTheField(t *testing.T) {
	const files = `"identity":{"source":"files","cert_file":"c","key_file":"k","ca_file":"a"}`
	cases := []struct {
		name, json, wantErr string
	}{
		{"valid, files", `{"gateway_address":"gw:50052","component_id":"w",` + files + `}`, ""},
		{"valid, Workload API", `{"gateway_address":"gw:50052","component_id":"w","identity":{"source":"workload-api"}}`, ""},
		{"not JSON", `{"gateway_address":`, "decoding"},
		{"no gateway", `{"component_id":"w",` + files + `}`, "gateway_address is required"},
		{"gateway without port", `{"gateway_address":"gw","component_id":"w",` + files + `}`, "gateway_address \"gw\" must be host:port"},
		{"no component", `{"gateway_address":"gw:50052",` + files + `}`, "component_id is required"},
		{"unknown identity source", `{"gateway_address":"gw:50052","component_id":"w","identity":{"source":"vault"}}`, "identity.source must be"},
		{"files without a key", `{"gateway_address":"gw:50052","component_id":"w","identity":{"source":"files","cert_file":"c","ca_file":"a"}}`, "identity.key_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bootstrap.Parse([]byte(tc.json))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			case err == nil && b.Partition != "default":
				t.Fatalf("partition %q, want the default", b.Partition)
			}
		})
	}
}

// An onboarding bundle names its files relative to config.json (./tls.crt):
// they are found next to it whatever the working directory is, and absolute
// paths stay as they are.
func TestLoadTakesRelativeIdentityFilesFromItsDirectory(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, cert, wantCert string
	}{
		{"dot-relative, as the manager renders", "./tls.crt", filepath.Join(dir, "tls.crt")},
		{"bare name", "tls.crt", filepath.Join(dir, "tls.crt")},
		{"subdirectory", "id/tls.crt", filepath.Join(dir, "id", "tls.crt")},
		{"absolute", "/etc/sync/tls.crt", "/etc/sync/tls.crt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			boot := fmt.Sprintf(`{"gateway_address":"gw:50052","component_id":"w","identity":{"source":"files","cert_file":%q,"key_file":"./tls.key","ca_file":"./ca.crt"}}`, tc.cert)
			path := filepath.Join(dir, "config.json")
			if err := os.WriteFile(path, []byte(boot), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Chdir(t.TempDir()) // anywhere but the bundle's directory
			b, err := bootstrap.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if b.Identity.CertFile != tc.wantCert || b.Identity.KeyFile != filepath.Join(dir, "tls.key") || b.Identity.CAFile != filepath.Join(dir, "ca.crt") {
				t.Fatalf("identity files %q, %q, %q; want %q and tls.key, ca.crt in %s", b.Identity.CertFile, b.Identity.KeyFile, b.Identity.CAFile, tc.wantCert, dir)
			}
		})
	}
}

func TestConfigJSONIsStable(t *testing.T) {
	b := bootstrap.Config{GatewayAddress: "gw:50052", ComponentID: "c", Partition: "default", TenantSlug: "acme", Identity: bootstrap.FileIdentity("/id")}
	one, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	two, _ := b.JSON()
	if string(one) != string(two) || !strings.Contains(string(one), `"cert_file": "/id/tls.crt"`) {
		t.Fatalf("bootstrap JSON: %s", one)
	}
	back, err := bootstrap.Parse(one)
	if err != nil || back != b {
		t.Fatalf("parsed back %+v, %v; want %+v", back, err, b)
	}
}
