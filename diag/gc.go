package diag

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target of the gateway and the
// worker unless GOGC is set: the heap may grow by three quarters of its live
// size before a collection, rather than Go's default of all of it. Both hold
// many long-lived objects (connections, streams, catalog entries, segments)
// and have CPU to spare. Measured on 2 cores, 100 -> 75: bench-gateway peak
// RSS 176-184 -> 167-171 MiB (GetConfig far above its target either way),
// bench-ingest 13.8-14.3k -> 13.0-13.6k devices/s; at 50 the gateway held
// 151 MiB but ingest lost a fifth.
const DefaultGCPercent = 75

// SetGCPercent sets the garbage collector's target to pct, unless the GOGC
// environment variable already chose one or pct is zero. It returns the
// target in force.
func SetGCPercent(pct int) int {
	if pct == 0 || os.Getenv("GOGC") != "" {
		cur := debug.SetGCPercent(100)
		debug.SetGCPercent(cur)
		return cur
	}
	debug.SetGCPercent(pct)
	return pct
}
