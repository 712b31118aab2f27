package store_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
)

// A device whose field PostgreSQL cannot store (text and jsonb refuse NUL
// bytes and invalid UTF-8) is refused alone: the rest of its segment lands,
// the run completes and says how many were refused and why, and the next
// run of the source is not blocked.
func TestUnstorableDevicesAreRefusedOneByOne(t *testing.T) {
	cases := []struct {
		name, field string
		spoil       func(*store.Device)
	}{
		{"NUL in hostname", "hostname", func(d *store.Device) { d.Hostname = "sw\x00itch" }},
		{"NUL in device id", "device id", func(d *store.Device) { d.DeviceID = "fk-\x00" }},
		{"NUL in a MAC", "mac", func(d *store.Device) { d.MACs = append(d.MACs, "00:1b:\x00") }},
		{"NUL in a metadata value", `metadata["site"]`, func(d *store.Device) { d.Metadata["site"] = "dc\x001" }},
		{"NUL in a metadata key", "metadata key", func(d *store.Device) { d.Metadata["si\x00te"] = "dc1" }},
		{"invalid UTF-8 in vendor", "vendor", func(d *store.Device) { d.Vendor = "Cisco\xff\xfe" }},
		{"invalid UTF-8 in a metadata value", `metadata["role"]`, func(d *store.Device) { d.Metadata["role"] = "\xc3(" }},
	}
	s := open(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			slug := "refuse" + string(rune('a'+i))
			f := newFleet(10)
			devs := make([]store.Device, 0, 10)
			for k := range 10 {
				devs = append(devs, f.device(k))
			}
			tc.spoil(&devs[3])
			seg := store.Segment{TenantID: acmeID, TenantSlug: slug, Partition: "default", Integration: "faker",
				SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), RunComplete: true, FullFetch: true, Devices: devs}
			got, err := s.ApplySegment(context.Background(), seg)
			if err != nil {
				t.Fatalf("one bad device failed the whole segment: %v", err)
			}
			if got.Refused != 1 || !strings.Contains(got.RefusedReason, tc.field) || !strings.Contains(got.RefusedReason, "device 3") {
				t.Fatalf("refused %d (%q), want 1 naming device 3 and %q", got.Refused, got.RefusedReason, tc.field)
			}
			if got.Run == nil || got.Run.Refused != 1 || got.Run.RefusedReason != got.RefusedReason || got.Run.Devices != 9 {
				t.Fatalf("run = %+v, want 9 devices applied and 1 refused", got.Run)
			}
			if n := count(t, s, slug, ""); n != 9 {
				t.Fatalf("%d devices stored, want the 9 good ones", n)
			}
			// The source's next run, now clean, is not blocked by the last.
			f.run(t, s, slug, acmeID, 5)
			if n := count(t, s, slug, "is_available"); n != 10 {
				t.Fatalf("%d devices available after a clean run, want 10", n)
			}
		})
	}
}

// A segment that can never be stored is refused as invalid (the gateway
// answers InvalidArgument), not as a failure worth sending again.
func TestInvalidSegmentIsPermanent(t *testing.T) {
	s := open(t)
	f := newFleet(2)
	for _, tc := range []struct {
		name string
		seg  store.Segment
		want string
	}{
		{"run id not a UUID", store.Segment{RunID: "run-1"}, "sync_run_id"},
		{"negative segment", store.Segment{RunID: uuid.NewString(), Segment: -1}, "segment -1"},
		{"segment beyond int32", store.Segment{RunID: uuid.NewString(), Segment: math.MaxInt32 + 1}, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seg := tc.seg
			seg.TenantID, seg.TenantSlug, seg.Partition, seg.Integration = acmeID, "invalidseg", "default", "faker"
			seg.SourceUID, seg.SyncServiceID, seg.AgentID = srcUID, "ss", "w"
			seg.Devices = []store.Device{f.device(0), f.device(1)}
			_, err := s.ApplySegment(context.Background(), seg)
			if !errors.Is(err, store.ErrInvalidSegment) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidSegment naming %q", err, tc.want)
			}
		})
	}
}

// A run's error text comes from the worker, which quotes integration
// servers: a NUL byte or invalid UTF-8 in it is cleaned, so the run still
// ends (and retracts) instead of its last segment being refused forever.
func TestRunErrorIsCleaned(t *testing.T) {
	s := open(t)
	f := newFleet(3)
	devs := []store.Device{f.device(0), f.device(1), f.device(2)}
	got, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "runerror", Partition: "default", Integration: "faker",
		SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), RunComplete: true, FullFetch: false,
		Error: "page 3: \x00bad\xff answer", Devices: devs})
	if err != nil {
		t.Fatalf("a run error with a NUL byte failed its segment: %v", err)
	}
	if got.Run == nil || got.Run.Error != "page 3: bad\uFFFD answer" {
		t.Fatalf("run %+v, want it finished with the cleaned error", got.Run)
	}
}
