// Package backoff spaces the worker's retries of its calls to the gateway
// (Hello, the ControlStream, segment sends): exponential from a first
// delay, doubled at each retry up to a cap, plus up to 30% of it at random
// so that the workers one gateway restart disconnected do not all come back
// at the same moment.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter is the largest share of a delay that is added at random.
const Jitter = 0.3

// Exponential is the delays of one retry loop; not safe for concurrent use.
type Exponential struct {
	next, limit time.Duration
}

// New starts the delays at first, doubling up to limit.
func New(first, limit time.Duration) *Exponential {
	return &Exponential{next: first, limit: limit}
}

// Next is the delay before the next retry: the current delay plus up to
// Jitter of it at random. The current delay then doubles, up to the limit
// (so a delay is at most the limit plus its jitter).
func (e *Exponential) Next() time.Duration {
	d := e.next
	e.next = min(2*e.next, e.limit)
	return d + time.Duration(rand.Float64()*Jitter*float64(d)) //nolint:gosec // jitter spreads retries; it needs no secure randomness
}
