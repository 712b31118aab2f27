package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
)

// TestLastSeenMovesAlone checks what a run that changes nothing but time
// writes, with the device cache, without it, and across two replicas: a
// device seen again within the last-seen resolution keeps its last_seen; seen
// later than that, it moves to the new time and nothing else of it changes
// (the run counts it unchanged); seen earlier, it never moves back; and a
// field that changes moves last_seen with it.
func TestLastSeenMovesAlone(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)
	res := store.DefaultLastSeenResolution
	steps := []struct {
		name     string
		seen     time.Time
		hostname string // of device 0
		// want: last_seen of every device after the step, and the counts.
		want               time.Time
		updated, unchanged int
	}{
		{"first run", t0, "h0", t0, 0, 0},
		{"within the resolution", t0.Add(res / 2), "h0", t0, 0, 3},
		{"later than the resolution", t0.Add(2 * time.Hour), "h0", t0.Add(2 * time.Hour), 0, 3},
		{"earlier", t0.Add(time.Hour), "h0", t0.Add(2 * time.Hour), 0, 3},
		{"a field changes", t0.Add(3 * time.Hour), "h0-renamed", t0.Add(3 * time.Hour), 1, 2},
	}
	for _, tc := range []struct {
		name  string
		cache int
		two   bool
	}{
		{"cached", store.DefaultCacheEntries, false},
		{"uncached", 0, false},
		{"second replica", store.DefaultCacheEntries, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second := replicas(t, tc.cache, tc.two)
			for i, step := range steps {
				s := first
				if i%2 == 1 {
					s = second
				}
				var devs []store.Device
				for d := range 3 {
					host := fmt.Sprint("h", d)
					if d == 0 {
						host = step.hostname
					}
					devs = append(devs, store.Device{DeviceID: fmt.Sprint("dev-", d), MACs: []string{fmt.Sprintf("00:1b:00:00:00:%02x", d)},
						IP: fmt.Sprint("10.0.0.", d+1), Hostname: host, Seen: step.seen})
				}
				got, err := s.ApplySegment(ctx, store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "faker",
					SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), RunComplete: true, FullFetch: true, Devices: devs})
				if err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if i > 0 && (got.Created != 0 || got.Updated != step.updated || got.Unchanged != step.unchanged) {
					t.Errorf("%s: created %d, updated %d, unchanged %d; want 0, %d, %d", step.name, got.Created, got.Updated, got.Unchanged,
						step.updated, step.unchanged)
				}
				rows, err := first.Pool().Query(ctx, "SELECT hostname, last_seen FROM tenant_acme.ocsf_devices ORDER BY hostname")
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for rows.Next() {
					var host string
					var last time.Time
					if err := rows.Scan(&host, &last); err != nil {
						t.Fatal(err)
					}
					if n++; !last.Equal(step.want) {
						t.Errorf("%s: %s last seen %v, want %v", step.name, host, last.UTC(), step.want)
					}
				}
				if rows.Close(); n != 3 {
					t.Fatalf("%s: %d devices stored, want 3", step.name, n)
				}
			}
		})
	}
}
