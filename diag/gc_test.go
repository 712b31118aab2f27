package diag

import (
	"runtime/debug"
	"testing"
)

func TestSetGCPercentYieldsToGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	cases := []struct {
		name, gogc string
		pct, want  int
	}{
		{"flag applies", "", 50, 50},
		{"zero keeps the runtime's", "", 0, 100},
		{"GOGC wins", "80", 50, 100}, // the runtime read GOGC at start; SetGCPercent leaves it
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			debug.SetGCPercent(100)
			if got := SetGCPercent(tc.pct); got != tc.want {
				t.Fatalf("SetGCPercent(%d) with GOGC=%q = %d, want %d", tc.pct, tc.gogc, got, tc.want)
			}
			if cur := debug.SetGCPercent(100); cur != tc.want {
				t.Fatalf("the runtime's target is %d, want %d", cur, tc.want)
			}
		})
	}
}
