package chunk

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/serviceradar/sync-operator/test/segmentsink"
	"github.com/serviceradar/sync-operator/wire/results"
)

func device(i int) results.DeviceUpdate {
	return results.DeviceUpdate{DeviceID: fmt.Sprint(i), IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		Metadata: map[string]string{"faker_device_id": fmt.Sprint(i), "all_macs": "00:11:22:33:44:55,00:11:22:33:44:56"}}
}

// onlyRun is the one run a test sent.
func onlyRun(t *testing.T, sink *segmentsink.Sink) segmentsink.Run {
	t.Helper()
	runs := sink.Runs("")
	if len(runs) != 1 {
		t.Fatalf("%d runs reached the gateway, want 1", len(runs))
	}
	return runs[0]
}

func TestSenderDeliversEverySegmentWithinTheGatewayLimits(t *testing.T) {
	transient := func(m results.Meta, attempt int) codes.Code {
		if m.Segment%3 == 1 && attempt <= 2 {
			return codes.Unavailable
		}
		return codes.OK
	}
	cases := []struct {
		name                     string
		devices, segment, chunkB int
		fail                     func(results.Meta, int) codes.Code
		wantSegments             int // applied, the final one included
		wantMaxDevicesPerSegment int
		retried                  bool
	}{
		{name: "segments by device count", devices: 1000, segment: 300, wantSegments: 4, wantMaxDevicesPerSegment: 300},
		{name: "tiny chunks close segments by chunk count", devices: 2000, segment: 1 << 20, chunkB: 300,
			wantSegments: 21, wantMaxDevicesPerSegment: MaxSegmentChunks},
		{name: "a huge SegmentDevices is bounded", devices: MaxSegmentDevices + 10, segment: 1 << 30,
			wantSegments: 2, wantMaxDevicesPerSegment: MaxSegmentDevices},
		{name: "failed segments are sent again under their number", devices: 1000, segment: 100, fail: transient,
			wantSegments: 11, wantMaxDevicesPerSegment: 100, retried: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink, client := segmentsink.Start(t, &segmentsink.Sink{Fail: tc.fail, Delay: 5 * time.Millisecond})
			s := &Sender{Client: client, AgentID: "w", SegmentDevices: tc.segment, ChunkBytes: tc.chunkB,
				MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
				Meta: results.Meta{SyncRunID: "run", IntegrationSourceUID: "src"}}
			for i := range tc.devices {
				if err := s.Add(t.Context(), device(i)); err != nil {
					t.Fatalf("Add %d: %v", i, err)
				}
			}
			if err := s.Finish(t.Context(), true, ""); err != nil {
				t.Fatalf("Finish: %v", err)
			}
			run := onlyRun(t, sink)
			if len(run.Segments) != tc.wantSegments {
				t.Fatalf("%d segments applied, want %d", len(run.Segments), tc.wantSegments)
			}
			total, retried := 0, false
			for seg := range tc.wantSegments {
				applied, ok := run.Segments[seg]
				if !ok {
					t.Fatalf("segment %d never applied (numbers must run 0..%d)", seg, tc.wantSegments-1)
				}
				final := seg == tc.wantSegments-1
				if applied.Meta.RunComplete != final || applied.Meta.FullFetch != final {
					t.Errorf("segment %d: run_complete %v full_fetch %v, want both %v", seg, applied.Meta.RunComplete, applied.Meta.FullFetch, final)
				}
				if n := len(applied.Devices); n > tc.wantMaxDevicesPerSegment {
					t.Errorf("segment %d carries %d devices, want at most %d", seg, n, tc.wantMaxDevicesPerSegment)
				}
				total += len(applied.Devices)
				retried = retried || run.Attempts[seg] > 1
			}
			if total != tc.devices || s.Sent() != tc.devices {
				t.Errorf("gateway applied %d devices, sender counts %d, want %d", total, s.Sent(), tc.devices)
			}
			if final, _ := run.Complete(); final.TotalDevices != tc.devices {
				t.Errorf("final total_devices %d, want %d", final.TotalDevices, tc.devices)
			}
			if retried != tc.retried {
				t.Errorf("segments retried: %v, want %v", retried, tc.retried)
			}
			if n := sink.MaxInFlight(); n > 2 {
				t.Errorf("%d calls in flight at once, want at most 2", n)
			}
		})
	}
}

func TestSenderStopsOnPermanentRefusal(t *testing.T) {
	sink, client := segmentsink.Start(t, &segmentsink.Sink{Fail: func(m results.Meta, _ int) codes.Code {
		if m.Segment == 1 {
			return codes.PermissionDenied
		}
		return codes.OK
	}})
	s := &Sender{Client: client, AgentID: "w", SegmentDevices: 10, MinBackoff: time.Millisecond,
		Meta: results.Meta{SyncRunID: "run", IntegrationSourceUID: "src"}}
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = s.Add(t.Context(), device(i))
	}
	if err == nil {
		err = s.Finish(t.Context(), true, "")
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("error %v, want the PermissionDenied of segment 1", err)
	}
	s.Abandon()
	run := onlyRun(t, sink)
	if run.Attempts[1] != 1 {
		t.Errorf("segment 1 sent %d times, want once (a refusal is not retried)", run.Attempts[1])
	}
	if _, done := run.Complete(); done {
		t.Error("a run completed after a refusal")
	}
}

func TestFailEndsTheRunWithItsError(t *testing.T) {
	sink, client := segmentsink.Start(t, &segmentsink.Sink{})
	s := &Sender{Client: client, AgentID: "w", SegmentDevices: 100, Meta: results.Meta{SyncRunID: "run", IntegrationSourceUID: "src"}}
	for i := range 250 {
		if err := s.Add(t.Context(), device(i)); err != nil {
			t.Fatal(err)
		}
	}
	long := strings.Repeat("é", MaxErrorBytes) // 2 bytes each: cut on a rune boundary
	if err := s.Fail(context.Background(), long); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	run := onlyRun(t, sink)
	final, ok := run.Segments[2]
	if !ok || len(run.Segments) != 3 {
		t.Fatalf("%d segments, want 0, 1 and the final 2", len(run.Segments))
	}
	if !final.Meta.RunComplete || final.Meta.FullFetch || len(final.Devices) != 0 || final.Meta.TotalDevices != 200 {
		t.Errorf("final segment %+v with %d devices, want run_complete, no full fetch, none of the 50 unsent, total 200", final.Meta, len(final.Devices))
	}
	if e := final.Meta.Error; len(e) > MaxErrorBytes || !strings.HasSuffix(e, "...") || !strings.HasPrefix(e, "éé") {
		t.Errorf("error of %d bytes, want at most %d, cut on a rune and ending in ...", len(e), MaxErrorBytes)
	}
}

// A gateway at its admission limits turns a segment away more often than
// Attempts allows failures: the segment waits its turn and lands, the run
// completes; a run whose context ends while it waits stops with that.
func TestSenderWaitsOutAGatewayAtItsLimits(t *testing.T) {
	const busyFor = 30
	sink, client := segmentsink.Start(t, &segmentsink.Sink{Busy: func(m results.Meta, attempt int) bool {
		return m.Segment == 1 && attempt <= busyFor
	}})
	s := &Sender{Client: client, AgentID: "w", SegmentDevices: 10, Attempts: 3, MinBackoff: time.Millisecond,
		Meta: results.Meta{SyncRunID: "run", IntegrationSourceUID: "src"}}
	for i := range 30 {
		if err := s.Add(t.Context(), device(i)); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	if err := s.Finish(t.Context(), true, ""); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	run := onlyRun(t, sink)
	if run.Attempts[1] != busyFor+1 {
		t.Errorf("segment 1 sent %d times, want %d (turned away %d times, then applied)", run.Attempts[1], busyFor+1, busyFor)
	}
	if _, done := run.Complete(); !done {
		t.Error("the run did not complete")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, client = segmentsink.Start(t, &segmentsink.Sink{Busy: func(results.Meta, int) bool { return true }})
	s = &Sender{Client: client, AgentID: "w", SegmentDevices: 10, Attempts: 3, Meta: results.Meta{SyncRunID: "run2", IntegrationSourceUID: "src"}}
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		err = s.Add(ctx, device(i))
	}
	if err == nil {
		err = s.Finish(ctx, true, "")
	}
	if err == nil || ctx.Err() == nil {
		t.Fatalf("a run the gateway never admits ended with %v before its context did", err)
	}
	s.Abandon()
}
