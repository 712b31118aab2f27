package results_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/wire/results"
)

func TestParseAcceptsBothFormsAndNamesWhatIsWrong(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		devices  int
		meta     bool
		wantErr  string
	}{
		{"object form", `{"sync_meta":{"sync_run_id":"r","segment":2,"run_complete":true},"devices":[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}]}`, 2, true, ""},
		{"upstream array form", ` [{"ip":"10.0.0.1","metadata":{"armis_device_id":"1"}}]`, 1, false, ""},
		{"empty array", `[]`, 0, false, ""},
		{"object without sync_meta", `{"devices":[]}`, 0, false, "lacks sync_meta"},
		{"empty message", "  ", 0, false, "empty"},
		{"scalar", `42`, 0, false, "neither"},
		{"broken json", `{"sync_meta":`, 0, false, "results object"},
		{"wrong type", `[{"ip":5}]`, 0, false, "results array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := results.Parse([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to say %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(m.Devices) != tc.devices || (m.Meta != nil) != tc.meta {
				t.Fatalf("Parse = %+v, %v", m, err)
			}
		})
	}
}

func TestEncodeRoundTrips(t *testing.T) {
	yes := true
	in := results.Message{Meta: &results.Meta{SyncRunID: "r", Segment: 1, FullFetch: true}, Devices: []results.DeviceUpdate{{IP: "10.0.0.1", IsAvailable: &yes}}}
	raw, err := results.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := results.Parse(raw)
	if err != nil || *out.Meta != *in.Meta || out.Devices[0].IP != "10.0.0.1" || !*out.Devices[0].IsAvailable {
		t.Fatalf("round trip %+v %v", out, err)
	}
}

// TestScanBoundsAMessageBeforeItIsDecoded checks the bounds the gateway puts
// on a message before decoding it (issue 14, defect 2): metadata entries
// per device, devices per message and nesting, counted outside strings only.
func TestScanBoundsAMessageBeforeItIsDecoded(t *testing.T) {
	metadata := func(n int) string {
		entries := make([]string, n)
		for i := range entries {
			entries[i] = fmt.Sprintf(`"k%d":"v"`, i)
		}
		return `{"metadata":{` + strings.Join(entries, ",") + `}}`
	}
	devices := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat("{},", n), ",") + "]" }
	for _, tc := range []struct {
		name    string
		in      string
		devices int
		wantErr bool
	}{
		{"metadata at the bound", "[" + metadata(results.MaxObjectMembers) + "]", 1, false},
		{"metadata over the bound", "[" + metadata(results.MaxObjectMembers+1) + "]", 0, true},
		{"metadata over the bound in the object form", `{"sync_meta":{"sync_run_id":"r"},"devices":[` + metadata(results.MaxObjectMembers+1) + `]}`, 0, true},
		{"devices at the bound", devices(results.MaxDevicesPerMessage), results.MaxDevicesPerMessage, false},
		{"devices over the bound", devices(results.MaxDevicesPerMessage + 1), 0, true},
		{"nesting over the bound", strings.Repeat("[", results.MaxDepth+1) + strings.Repeat("]", results.MaxDepth+1), 0, true},
		{"colons and braces inside strings do not count", `[{"hostname":"` + strings.Repeat(`{:}[\"`, 1000) + `"}]`, 1, false},
		{"an escaped backslash ends a string", `[{"hostname":"a\\"},{"ip":"b"}]`, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := results.Parse([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, results.ErrShape) {
					t.Fatalf("Parse = %v, want a refusal of its shape", err)
				}
				return
			}
			shape, serr := results.Scan([]byte(tc.in))
			if err != nil || serr != nil || shape.Devices != tc.devices {
				t.Fatalf("Parse = %v, Scan = %+v %v, want %d devices", err, shape, serr, tc.devices)
			}
		})
	}
}
