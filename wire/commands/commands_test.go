package commands_test

import (
	"strings"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/wire/commands"
)

func TestRunNowRoundTripsAndNamesWhatIsMissing(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	valid := commands.RunNow{IntegrationSourceUID: "uid-1", Mode: commands.ModeIncremental, RequestedAt: at}
	raw, err := valid.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := commands.DecodeRunNow(raw)
	if err != nil || back.IntegrationSourceUID != valid.IntegrationSourceUID || back.Mode != valid.Mode || !back.RequestedAt.Equal(at) {
		t.Fatalf("decoded %+v, %v; want %+v", back, err, valid)
	}
	for _, tc := range []struct{ name, payload, wantErr string }{
		{"not JSON", `{`, "decoding"},
		{"no source", `{"mode":"full","requested_at":"2026-01-02T03:04:05Z"}`, "integration_source_uid is required"},
		{"unknown mode", `{"integration_source_uid":"u","mode":"some","requested_at":"2026-01-02T03:04:05Z"}`, "mode must be"},
		{"no time", `{"integration_source_uid":"u","mode":"full"}`, "requested_at is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := commands.DecodeRunNow([]byte(tc.payload)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}
