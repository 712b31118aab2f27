package server

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/serviceradar/sync-operator/wire/results"
)

// Admission bounds what callers may hold in the gateway at once, so that no
// caller, enrolled or not, can take the memory that every tenant's calls
// share. A call over a limit is answered ResourceExhausted with a
// google.rpc.RetryInfo detail; workers send it again after that delay.
type Admission struct {
	// StatusStreams bounds the StreamStatus calls in flight on this replica,
	// StatusStreamsPerCaller those of one certificate identity. Only
	// enrolled callers take a stream: the others are refused before.
	StatusStreams, StatusStreamsPerCaller int
	// ControlStreams bounds the open ControlStreams of this replica,
	// ControlStreamsPerCaller those of one certificate identity (a worker
	// holds one).
	ControlStreams, ControlStreamsPerCaller int
	// CallTimeout bounds reading one StreamStatus call's chunks, from the
	// call's start to its last chunk: a caller that sends slowly or not at
	// all is answered DeadlineExceeded.
	CallTimeout time.Duration
	// ApplyTimeout bounds applying a segment that has been read, its
	// database transaction, separately from CallTimeout: a large segment on
	// a slow database still lands (the caller's own deadline bounds it too).
	ApplyTimeout time.Duration
	// IngestBytes bounds the memory that in-flight StreamStatus calls hold.
	// A call reserves MaxMessageBytes before it reads its first chunk (for
	// the chunk being received and decoded), and every chunk is charged its
	// wire size (proto.Size) plus an upper estimate of what decoding its
	// results allocates (results.Shape) before it is decoded; all of it is
	// given back when the call ends.
	IngestBytes int64
	// IngestBytesPerCaller bounds what the calls of one certificate
	// identity hold of IngestBytes, so that one caller (a compromised
	// worker, say) cannot hold it all while other tenants' workers wait;
	// zero takes half of IngestBytes. A call that alone needs more than it
	// (or than IngestBytes) is refused for good: ResourceExhausted without
	// a retry delay.
	IngestBytesPerCaller int64
	// MaxMessageBytes is the largest message the gateway receives (gRPC's
	// MaxRecvMsgSize, set from it by the gateway binary; workers send chunks
	// of at most results.MaxChunkBytes), and what a StreamStatus call
	// reserves of the ingest budget before it reads.
	MaxMessageBytes int
	// RetryAfter is the delay a ResourceExhausted answer hints.
	RetryAfter time.Duration
}

// DefaultAdmission suits a replica with 1 GiB of memory: 256 MiB of
// estimated ingest memory, half of it for one caller, which holds the
// largest segments a worker has on their way (results.SegmentsInFlight
// calls of results.CallCharge: a reservation of results.MaxMessageBytes
// and a segment charged at most results.MaxSegmentCharge; a call of 5,000 typical
// devices, what a worker sends by default, is charged about 14 MiB with
// its reservation, and decodes into well under that; the rest of the
// memory is the device cache, the garbage collector's headroom over what
// calls hold, and gRPC's buffers), messages of at most 4 MiB (gRPC's
// default), 32 StreamStatus calls read within 2 minutes each
// (results.ReadTimeout) and applied within 5 (results.ApplyTimeout), 8 of
// them per caller (a worker sends 2 per source at once).
var DefaultAdmission = Admission{
	StatusStreams: 32, StatusStreamsPerCaller: 8,
	ControlStreams: 10000, ControlStreamsPerCaller: 4,
	CallTimeout: results.ReadTimeout, ApplyTimeout: results.ApplyTimeout,
	IngestBytes: defaultIngestBytes, IngestBytesPerCaller: defaultIngestBytes / 2,
	MaxMessageBytes: results.MaxMessageBytes, RetryAfter: 2 * time.Second,
}

// defaultIngestBytes is DefaultAdmission.IngestBytes.
const defaultIngestBytes = 256 << 20

// One caller's default share holds the largest segments a worker has on
// their way: this does not compile otherwise (a negative constant
// overflows uint).
const _ = uint(defaultIngestBytes/2 - results.SegmentsInFlight*results.CallCharge)

// WithDefaults fills zero fields from DefaultAdmission (IngestBytesPerCaller
// from IngestBytes).
func (a Admission) WithDefaults() Admission {
	d := DefaultAdmission
	for _, f := range []struct{ v, def *int }{
		{&a.StatusStreams, &d.StatusStreams}, {&a.StatusStreamsPerCaller, &d.StatusStreamsPerCaller},
		{&a.ControlStreams, &d.ControlStreams}, {&a.ControlStreamsPerCaller, &d.ControlStreamsPerCaller},
		{&a.MaxMessageBytes, &d.MaxMessageBytes},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if a.CallTimeout <= 0 {
		a.CallTimeout = d.CallTimeout
	}
	if a.ApplyTimeout <= 0 {
		a.ApplyTimeout = d.ApplyTimeout
	}
	if a.IngestBytes <= 0 {
		a.IngestBytes = d.IngestBytes
	}
	if a.IngestBytesPerCaller <= 0 || a.IngestBytesPerCaller > a.IngestBytes {
		a.IngestBytesPerCaller = a.IngestBytes / 2
	}
	if a.RetryAfter <= 0 {
		a.RetryAfter = d.RetryAfter
	}
	return a
}

// Limits refused by, the label of sync_gateway_throttled_total.
const (
	LimitStreams       = "streams"
	LimitCallerStreams = "caller_streams"
	LimitIngestMemory  = "ingest_memory"
	// LimitCallerIngestMemory is Admission.IngestBytesPerCaller.
	LimitCallerIngestMemory = "caller_ingest_memory"
	// LimitCallIngestMemory is one call needing more than
	// Admission.IngestBytesPerCaller (or IngestBytes) alone: it can never
	// be admitted, and is refused without a retry delay.
	LimitCallIngestMemory = "call_ingest_memory"
)

// slots counts the open streams of one kind, in total and per caller.
type slots struct {
	mu             sync.Mutex
	max, maxCaller int
	open           int
	byCaller       map[string]int
}

func newSlots(limit, perCaller int) *slots {
	return &slots{max: limit, maxCaller: perCaller, byCaller: map[string]int{}}
}

// take opens a stream of caller, or names the limit it would break.
func (s *slots) take(caller string) (release func(), limit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byCaller[caller] >= s.maxCaller:
		return nil, LimitCallerStreams
	case s.open >= s.max:
		return nil, LimitStreams
	}
	s.open++
	s.byCaller[caller]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.open--
			if s.byCaller[caller]--; s.byCaller[caller] <= 0 {
				delete(s.byCaller, caller)
			}
		})
	}, ""
}

// budget is the ingest memory that in-flight calls may hold, in total and
// per caller.
type budget struct {
	size, perCaller int64
	held            func(delta int64) // reports a change of the total, for the gauge

	mu       sync.Mutex
	total    int64
	byCaller map[string]int64
}

func newBudget(size, perCaller int64, held func(delta int64)) *budget {
	return &budget{size: size, perCaller: perCaller, held: held, byCaller: map[string]int64{}}
}

// take adds n bytes to what caller holds, or names the limit that cannot
// hold them now.
func (b *budget) take(caller string, n int64) (limit string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.byCaller[caller]+n > b.perCaller:
		return LimitCallerIngestMemory
	case b.total+n > b.size:
		return LimitIngestMemory
	}
	b.total += n
	b.byCaller[caller] += n
	b.held(n)
	return ""
}

// give returns n bytes that caller held.
func (b *budget) give(caller string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total -= n
	if b.byCaller[caller] -= n; b.byCaller[caller] <= 0 {
		delete(b.byCaller, caller)
	}
	b.held(-n)
}

// charge is what one call holds of a budget; it takes more as chunks
// arrive and gives everything back once, when the call ends (even while a
// chunk is still being read: nothing is taken after close).
type charge struct {
	b      *budget
	caller string
	mu     sync.Mutex
	n      int64
	closed bool
}

// take adds n bytes to the charge, or names the limit that cannot hold
// them: LimitCallIngestMemory when the call alone would hold more than one
// caller (or the whole budget) may, which no retry can fix.
func (c *charge) take(n int64) (limit string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return LimitIngestMemory
	}
	if c.n+n > min(c.b.perCaller, c.b.size) {
		return LimitCallIngestMemory
	}
	if limit := c.b.take(c.caller, n); limit != "" {
		return limit
	}
	c.n += n
	return ""
}

// shrink gives back what the call holds beyond keep bytes.
func (c *charge) shrink(keep int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed && c.n > keep {
		c.b.give(c.caller, c.n-keep)
		c.n = keep
	}
}

// held is what the call holds.
func (c *charge) held() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// close gives back everything the call held.
func (c *charge) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed && c.n > 0 {
		c.b.give(c.caller, c.n)
	}
	c.closed, c.n = true, 0
}

// exhausted is the answer to a call over a limit: ResourceExhausted with a
// RetryInfo detail, and the delay in the message for clients that do not
// read details.
func exhausted(retry time.Duration, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf("; retry in %s", retry)
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err() //nolint:wrapcheck // a gRPC status
}
