package app_test

import (
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/workers/app"
)

func TestLoadBootstrapNamesTheField(t *testing.T) {
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
			b, err := app.LoadBootstrapJSON([]byte(tc.json))
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
