package bundle_test

import (
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/wire/bundle"
)

func TestEncodeKeepsIntegersExact(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed int64
		want string
	}{
		{"seed above 2^53", 1<<53 + 1, `"seed":9007199254740993`},
		{"largest int64", 1<<63 - 1, `"seed":9223372036854775807`},
		{"negative", -(1<<53 + 1), `"seed":-9007199254740993`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bundle.Sync{AgentID: "w", Scope: bundle.ScopeTenant, Sources: map[string]bundle.Source{
				"acme/lab": {Type: "faker", Faker: &bundle.Faker{Devices: 10, Seed: tc.seed}},
			}}
			raw, _, err := bundle.Encode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(raw), tc.want) {
				t.Fatalf("bundle lacks %s: %s", tc.want, raw)
			}
		})
	}
}

// Redacted keeps the credential keys, hides their values and leaves the
// bundle it was made from as it was.
func TestRedactedHidesCredentialsOnly(t *testing.T) {
	b := bundle.Sync{AgentID: "w", Sources: map[string]bundle.Source{
		"acme/armis": {Type: "armis", Credentials: map[string]string{"secret_key": "s3cret"}},
		"acme/lab":   {Type: "faker"},
	}}
	red := b.Redacted()
	if got := red.Sources["acme/armis"].Credentials; len(got) != 1 || got["secret_key"] != "[redacted]" {
		t.Fatalf("redacted credentials %v", got)
	}
	if red.Sources["acme/lab"].Credentials != nil || red.AgentID != "w" {
		t.Fatalf("redacted bundle %+v", red)
	}
	if b.Sources["acme/armis"].Credentials["secret_key"] != "s3cret" {
		t.Fatal("Redacted changed the original bundle")
	}
}
