package ingest_test

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/wire/results"
)

var sources = map[string]ingest.Source{
	"uid-armis":  {UID: "uid-armis", Integration: "armis", Partition: "default", SyncServiceID: "ss-1"},
	"uid-netbox": {UID: "uid-netbox", Integration: "netbox", Partition: "default", SyncServiceID: "ss-1"},
	"uid-edge":   {UID: "uid-edge", Integration: "netbox", Partition: "hq", SyncServiceID: "ss-2"},
}

// parse decodes an array-form message as the gateway does.
func parse(t *testing.T, raw string) ingest.Chunk {
	t.Helper()
	m, err := results.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return ingest.Chunk{Messages: []results.Message{m}, Final: true}
}

func TestUpstreamAttributesEachDeviceOrNamesIt(t *testing.T) {
	for _, tc := range []struct {
		name, device string
		code         codes.Code
		source       string
	}{
		{"its integration_source_uid", `{"ip":"10.0.0.1","metadata":{"integration_source_uid":"uid-edge"},"partition":"hq"}`, codes.OK, "uid-edge"},
		{"the only source of its type", `{"ip":"10.0.0.1","source":"armis"}`, codes.OK, "uid-armis"},
		{"its type and sync_service_id", `{"ip":"10.0.0.1","source":"netbox","sync_meta":{"sync_service_id":"ss-2","sync_run_id":"r"},"partition":"hq"}`, codes.OK, "uid-edge"},
		{"two sources of its type", `{"ip":"10.0.0.1","source":"netbox"}`, codes.InvalidArgument, "2 sources of this worker fit"},
		{"no source of its type", `{"ip":"10.0.0.1","source":"faker"}`, codes.InvalidArgument, "no source of this worker fits"},
		{"nothing said", `{"ip":"10.0.0.1"}`, codes.InvalidArgument, "3 sources of this worker fit"},
		{"another worker's source", `{"ip":"10.0.0.1","metadata":{"integration_source_uid":"uid-other"}}`, codes.PermissionDenied, "not a source of this worker"},
		{"another tenant", `{"ip":"10.0.0.1","source":"armis","tenant_slug":"globex"}`, codes.PermissionDenied, "another tenant"},
		{"another partition", `{"ip":"10.0.0.1","source":"armis","partition":"hq"}`, codes.InvalidArgument, "is not the source's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := ingest.NewUpstream("tid", "acme", sources, ingest.DefaultLimits, "call-run")
			err := u.Add(parse(t, `[{"ip":"10.9.9.9","source":"armis"},`+tc.device+`]`))
			if tc.code != codes.OK {
				if status.Code(err) != tc.code || !strings.Contains(err.Error(), "device 1: "+tc.source[:0]) || !strings.Contains(err.Error(), tc.source) {
					t.Fatalf("got %v, want %s naming device 1 and %q", err, tc.code, tc.source)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			segs := u.Windows("agent", true, 0)
			var got string
			for _, s := range segs {
				for _, d := range s.Devices {
					if d.IP == "10.0.0.1" {
						got = s.SourceUID
					}
				}
			}
			if got != tc.source {
				t.Fatalf("the device went to %q, want %q", got, tc.source)
			}
		})
	}
}

func TestUpstreamRunsAndLegacyAvailability(t *testing.T) {
	dev := func(ip, run string, final bool, total int) results.DeviceUpdate {
		no := false
		return results.DeviceUpdate{IP: ip, Source: "armis", IsAvailable: &no, Metadata: map[string]string{"armis_device_id": ip, "operating_system": "Windows 11"},
			SyncMeta: &results.DeviceMeta{SyncServiceID: "ss-1", SyncRunID: run, IsFinal: final, TotalDevices: total}}
	}
	raw, err := json.Marshal([]results.DeviceUpdate{dev("10.0.0.1", "r1", false, 2), dev("10.0.0.2", "r1", true, 2), dev("10.0.0.3", "r2", true, 3)})
	if err != nil {
		t.Fatal(err)
	}
	u := ingest.NewUpstream("tid", "acme", sources, ingest.DefaultLimits, "call-run")
	c := parse(t, string(raw))
	c.Final = false
	if err := u.Add(c); err != nil {
		t.Fatal(err)
	}
	segs := u.Windows("agent", false, 0)
	if len(segs) != 2 || segs[0].RunID == segs[1].RunID {
		t.Fatalf("two runs of one source, want two segments of different runs: %+v", segs)
	}
	for _, s := range segs {
		for _, d := range s.Devices {
			if d.IsAvailable != nil || d.OS != "Windows 11" {
				t.Fatalf("device %s: available %v, os %q: legacy false must not be availability, operating_system is the OS", d.IP, d.IsAvailable, d.OS)
			}
		}
		switch len(s.Devices) {
		case 2: // r1 sent all it announced
			if !s.RunComplete || !s.FullFetch || s.Error != "" {
				t.Fatalf("r1: %+v", s)
			}
		case 1: // r2 announced 3
			if !s.RunComplete || s.FullFetch || !strings.Contains(s.Error, "announced 3") {
				t.Fatalf("r2: %+v", s)
			}
		}
	}
}
