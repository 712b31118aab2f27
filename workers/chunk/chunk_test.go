package chunk

import (
	"context"
	"fmt"
	"testing"

	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/wire/results"
)

func TestChunksStayWithinTheirBudgetAndCarryTheSegment(t *testing.T) {
	for _, tc := range []struct {
		devices, chunkBytes int
		final               bool
	}{
		{0, 0, true}, {1, 0, false}, {1000, 16 << 10, false}, {1000, 64 << 10, true}, {5000, 0, true},
	} {
		t.Run(fmt.Sprintf("%d devices in %d-byte chunks", tc.devices, tc.chunkBytes), func(t *testing.T) {
			s := &Sender{AgentID: "w", ChunkBytes: tc.chunkBytes, SegmentDevices: tc.devices + 1, Meta: results.Meta{SyncRunID: "r", IntegrationSourceUID: "u"}}
			for i := range tc.devices {
				if err := s.Add(context.Background(), results.DeviceUpdate{IP: fmt.Sprintf("10.0.%d.%d", i/256, i%256),
					Metadata: map[string]string{"faker_device_id": fmt.Sprint(i), "all_macs": "00:11:22:33:44:55,00:11:22:33:44:56"}}); err != nil {
					t.Fatal(err)
				}
			}
			chunks, err := s.chunks(tc.final)
			if err != nil {
				t.Fatal(err)
			}
			budget := s.chunkBytes()
			total := 0
			for i, c := range chunks {
				if int(c.ChunkIndex) != i || int(c.TotalChunks) != len(chunks) || c.IsFinal != (i == len(chunks)-1) || c.AgentId != "w" {
					t.Fatalf("chunk %d framing: index %d total %d final %v", i, c.ChunkIndex, c.TotalChunks, c.IsFinal)
				}
				msg := c.Services[0].Message
				if len(msg) > budget+1024 {
					t.Fatalf("chunk %d carries %d bytes, budget %d", i, len(msg), budget)
				}
				m, err := results.Parse(msg)
				if err != nil || m.Meta.SyncRunID != "r" || m.Meta.RunComplete != tc.final {
					t.Fatalf("chunk %d: %+v %v", i, m.Meta, err)
				}
				total += len(m.Devices)
			}
			if total != tc.devices {
				t.Fatalf("%d devices in the chunks, want %d", total, tc.devices)
			}
		})
	}
}

func TestSegmentsStayWithinTheGatewayLimits(t *testing.T) {
	lim := ingest.DefaultLimits
	for _, chunkBytes := range []int{0, 300, 64 << 10, 1 << 20, 2 << 20, MaxChunkBytes, 64 << 20} {
		s := &Sender{ChunkBytes: chunkBytes}
		n := s.segmentChunks()
		// A chunk may pass its budget by one device and the overhead.
		worst := n * (s.chunkBytes() + chunkOverhead + 64<<10)
		if n < 1 || n > lim.MaxChunks-8 || worst > lim.MaxBytes {
			t.Errorf("ChunkBytes %d: %d chunks of up to %d bytes (%d in all) against the gateway's %d chunks and %d bytes",
				chunkBytes, n, s.chunkBytes(), worst, lim.MaxChunks, lim.MaxBytes)
		}
	}
}
