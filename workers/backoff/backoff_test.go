package backoff_test

import (
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/workers/backoff"
)

// The delays double from the first one up to the limit, each with at most
// Jitter of it added.
func TestDelaysDoubleUpToTheLimitWithJitter(t *testing.T) {
	cases := []struct {
		name         string
		first, limit time.Duration
		want         []time.Duration // the delays before jitter
	}{
		{"doubles, then stays at the limit", 200 * time.Millisecond, time.Second,
			[]time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}},
		{"a limit between two steps is reached, not passed", 250 * time.Millisecond, 600 * time.Millisecond,
			[]time.Duration{250 * time.Millisecond, 500 * time.Millisecond, 600 * time.Millisecond, 600 * time.Millisecond}},
		{"first at the limit", time.Second, time.Second, []time.Duration{time.Second, time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := backoff.New(tc.first, tc.limit)
			for i, base := range tc.want {
				d := b.Next()
				if hi := base + time.Duration(backoff.Jitter*float64(base)); d < base || d > hi {
					t.Fatalf("delay %d = %v, want within [%v, %v]", i, d, base, hi)
				}
			}
		})
	}
}
