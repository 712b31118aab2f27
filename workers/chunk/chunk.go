// Package chunk sends one sync run's devices to the gateway as StreamStatus
// segments (DESIGN.md section 6): devices are encoded as they arrive, a
// segment is sent when it holds SegmentDevices devices or MaxSegmentChunks
// chunks, or when the gateway would charge it MaxSegmentCharge of its
// ingest budget (within the gateway's default per-call limits and
// admission, which derive from the same constants), each of its chunks
// carries about ChunkBytes of results (never more than the gRPC limit), and
// a failed segment is sent again with backoff under the same segment number,
// which the gateway applies at most once. Memory holds one segment at most.
package chunk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/backoff"
)

// Defaults of a Sender.
const (
	DefaultChunkBytes     = 1 << 20
	DefaultSegmentDevices = 5000
	// MaxChunkBytes keeps a chunk under the gateway's message limit.
	MaxChunkBytes = results.MaxChunkBytes
	// MaxSegmentChunks, MaxSegmentBytes, MaxSegmentDevices and
	// MaxSegmentCharge keep one StreamStatus call within what a gateway
	// with default limits admits (the segment contract of package results),
	// whatever SegmentDevices and ChunkBytes say: a segment closes at 100
	// chunks, 48 MiB of them, 50,000 devices, or once the gateway would
	// charge it MaxSegmentCharge of its ingest budget.
	MaxSegmentChunks  = results.MaxSegmentChunks
	MaxSegmentBytes   = results.MaxSegmentBytes
	MaxSegmentDevices = results.MaxSegmentDevices
	MaxSegmentCharge  = results.MaxSegmentCharge
	// MaxErrorBytes bounds the run error a final segment carries (the
	// IntegrationSource's lastError holds at most 1024 characters).
	MaxErrorBytes = 1024
	// CallTimeout bounds one StreamStatus call: longer than the gateway
	// takes by default to read a segment and then to apply it
	// (results.ReadTimeout and results.ApplyTimeout), so that a segment a
	// slow database applies is not abandoned and sent again.
	CallTimeout = results.ReadTimeout + results.ApplyTimeout + time.Minute
	// chunkOverhead is what a chunk holds besides its devices: the sync_meta
	// with the longest error (JSON escaping can make a byte six) and the
	// JSON around them.
	chunkOverhead = 512 + 6*MaxErrorBytes
	// chunkCharge is what the gateway charges a chunk besides its devices:
	// chunkOverhead, the chunk's protobuf fields, and the decode estimate of
	// the message's outer object and its sync_meta (2 objects, at most 16
	// members between them).
	chunkCharge = chunkOverhead + results.ChunkWireOverhead + 4<<10
)

// Sender sends the segments of one run. It is not safe for concurrent use.
type Sender struct {
	// Client reaches the gateway; AgentID is the worker's component id.
	Client  pb.AgentGatewayServiceClient
	AgentID string
	// Meta identifies the run (source uid, run id, SyncService id); Segment,
	// RunComplete, FullFetch and TotalDevices are set by the Sender.
	Meta results.Meta
	// ChunkBytes and SegmentDevices size the chunks and segments.
	ChunkBytes, SegmentDevices int
	// Attempts bounds the failed sends of one segment (default 8); MinBackoff
	// and MaxBackoff space them (defaults 200 ms and 30 s). A gateway at its
	// admission limits (ResourceExhausted with a retry delay) is no failure:
	// the segment waits its turn, sent again after the hinted delay with up
	// to half of it again as jitter, until ctx ends.
	Attempts               int
	MinBackoff, MaxBackoff time.Duration
	// InFlight is how many segments may be on their way at once (default 2):
	// the next one is encoded and sent while the gateway applies the last.
	// The final segment waits for all of them, so retraction sees the whole run.
	InFlight int

	pending [][]byte // encoded devices of the open segment
	segment int
	// open is the open segment's chunk count and the bytes of its last
	// chunk, packed as chunks packs them, and what the gateway will charge
	// the segment of its ingest budget (results.Charge of every device and
	// chunkCharge a chunk).
	openChunks, openBytes int
	openCharge            int64

	slots  chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	failed error
	acked  int
}

// Sent is the number of devices acknowledged by the gateway so far.
func (s *Sender) Sent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// err is the first failure of a segment sent in the background.
func (s *Sender) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Add queues a device and sends the segment once it is full: before the
// device when the device would take the segment's charge over
// MaxSegmentCharge, after it when it fills the segment's devices or chunks.
func (s *Sender) Add(ctx context.Context, d results.DeviceUpdate) error {
	raw, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding device: %w", err)
	}
	charge, err := results.Charge(raw)
	if err != nil {
		return fmt.Errorf("encoding device: %w", err)
	}
	charge++ // its comma
	if err := s.err(); err != nil {
		return err
	}
	if len(s.pending) > 0 && s.openCharge+charge+chunkCharge > MaxSegmentCharge {
		if err := s.flush(ctx, false); err != nil {
			return err
		}
	}
	if s.openChunks == 0 || s.openBytes+len(raw)+2 > s.chunkBytes() {
		s.openChunks++
		s.openBytes = chunkOverhead
		s.openCharge += chunkCharge
	}
	s.openBytes += len(raw) + 1
	s.openCharge += charge
	s.pending = append(s.pending, raw)
	if len(s.pending) >= s.segmentDevices() || s.openChunks >= s.segmentChunks() {
		return s.flush(ctx, false)
	}
	return nil
}

// Finish waits for the segments on their way, then sends the last one
// (possibly empty) with run_complete, the fetch outcome and the run's error.
func (s *Sender) Finish(ctx context.Context, fullFetch bool, runErr string) error {
	s.wg.Wait()
	if err := s.err(); err != nil {
		return err
	}
	s.Meta.FullFetch, s.Meta.Error = fullFetch, runError(runErr)
	return s.flush(ctx, true)
}

// Abandon waits for the segments on their way; the run ends without
// run_complete.
func (s *Sender) Abandon() { s.wg.Wait() }

// Fail ends a run that could not finish (it timed out): it waits for the
// segments on their way, drops the devices not yet sent, and sends a final
// segment with run_complete, no full fetch and runErr, whatever became of
// the segments before it. ctx must still be live.
func (s *Sender) Fail(ctx context.Context, runErr string) error {
	s.wg.Wait()
	clear(s.pending)
	s.pending = s.pending[:0]
	s.Meta.FullFetch, s.Meta.Error = false, runError(runErr)
	return s.flush(ctx, true)
}

func (s *Sender) segmentDevices() int {
	if s.SegmentDevices > 0 {
		return min(s.SegmentDevices, MaxSegmentDevices)
	}
	return DefaultSegmentDevices
}

// segmentChunks is how many chunks a segment may fill.
func (s *Sender) segmentChunks() int {
	return min(MaxSegmentChunks, MaxSegmentBytes/s.chunkBytes())
}

// runError bounds a run's error text to MaxErrorBytes.
func runError(e string) string {
	if len(e) <= MaxErrorBytes {
		return e
	}
	return strings.ToValidUTF8(e[:MaxErrorBytes-3], "") + "..."
}

func (s *Sender) chunkBytes() int {
	if s.ChunkBytes > 0 {
		return min(s.ChunkBytes, MaxChunkBytes)
	}
	return DefaultChunkBytes
}

// chunks encodes the pending devices into chunk messages of about chunkBytes.
func (s *Sender) chunks(final bool) ([]*pb.GatewayStatusChunk, error) {
	meta := s.Meta
	meta.Segment, meta.RunComplete = s.segment, final
	if !final {
		meta.FullFetch, meta.Error = false, ""
	} else {
		meta.TotalDevices = s.Sent() + len(s.pending)
	}
	metaRaw, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("encoding sync_meta: %w", err)
	}
	var msgs [][]byte
	var buf bytes.Buffer
	open := func() {
		buf.Reset()
		buf.WriteString(`{"sync_meta":`)
		buf.Write(metaRaw)
		buf.WriteString(`,"devices":[`)
	}
	closeMsg := func() {
		buf.WriteString("]}")
		msgs = append(msgs, bytes.Clone(buf.Bytes()))
	}
	open()
	n := 0
	for _, d := range s.pending {
		if n > 0 && buf.Len()+len(d)+2 > s.chunkBytes() {
			closeMsg()
			open()
			n = 0
		}
		if len(d)+len(metaRaw)+64 > MaxChunkBytes {
			return nil, fmt.Errorf("a device of %d bytes does not fit a chunk", len(d))
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(d)
		n++
	}
	closeMsg()
	out := make([]*pb.GatewayStatusChunk, len(msgs))
	for i, m := range msgs {
		out[i] = &pb.GatewayStatusChunk{
			AgentId: s.AgentID, ChunkIndex: int32(i), TotalChunks: int32(len(msgs)), IsFinal: i == len(msgs)-1, //nolint:gosec // bounded by the segment
			Timestamp: time.Now().Unix(),
			Services: []*pb.GatewayServiceStatus{{ServiceName: results.ServiceName, ServiceType: results.ServiceType,
				Source: results.Source, Available: true, AgentId: s.AgentID, Message: m}},
		}
	}
	return out, nil
}

// permanent reports errors that sending again cannot fix. A
// ResourceExhausted answer with a retry delay is the gateway at its
// admission limits, not a segment over the per-call limits: it is sent again.
func permanent(err error) bool {
	if _, ok := retryDelay(err); ok {
		return false
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted, codes.FailedPrecondition:
		return true
	}
	return false
}

// retryDelay is the delay a ResourceExhausted answer hints in its
// google.rpc.RetryInfo detail.
func retryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// flush encodes the open segment and sends it: in the background, at most
// InFlight at once, unless it is the final one.
func (s *Sender) flush(ctx context.Context, final bool) error {
	if len(s.pending) == 0 && !final {
		return nil
	}
	chunks, err := s.chunks(final)
	if err != nil {
		return err
	}
	n, segment := len(s.pending), s.segment
	clear(s.pending) // the chunks hold the bytes now; let the devices go
	s.pending, s.openChunks, s.openBytes, s.openCharge = s.pending[:0], 0, 0, 0
	s.segment++
	if final {
		if err := s.deliver(ctx, segment, chunks); err != nil {
			return err
		}
		s.mu.Lock()
		s.acked += n
		s.mu.Unlock()
		return nil
	}
	if s.slots == nil {
		n := s.InFlight
		if n <= 0 {
			n = 2
		}
		s.slots = make(chan struct{}, n)
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("segment %d: %w", segment, ctx.Err())
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		err := s.deliver(ctx, segment, chunks)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil && s.failed == nil {
			s.failed = err
		}
		if err == nil {
			s.acked += n
		}
	}()
	return nil
}

// deliver sends one segment, again with backoff until it is acknowledged.
func (s *Sender) deliver(ctx context.Context, segment int, chunks []*pb.GatewayStatusChunk) error {
	attempts := s.Attempts
	if attempts <= 0 {
		attempts = 8
	}
	minB, maxB := s.MinBackoff, s.MaxBackoff
	if minB <= 0 {
		minB = 200 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	b := backoff.New(minB, maxB)
	for attempt, busy := 1, 0; ; attempt++ {
		err := s.send(ctx, chunks)
		if err == nil {
			return nil
		}
		hint, admission := retryDelay(err)
		if permanent(err) || ctx.Err() != nil || !admission && attempt-busy >= attempts {
			return fmt.Errorf("segment %d (attempt %d): %w", segment, attempt, err)
		}
		var delay time.Duration
		if admission {
			// Backpressure, not a failure: wait the gateway's turn. The
			// jitter spreads the callers it turned away at once.
			busy++
			delay = min(hint+rand.N(hint/2+1), maxB) //nolint:gosec // jitter
		} else {
			delay = b.Next()
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("segment %d: %w", segment, ctx.Err())
		case <-t.C:
		}
	}
}

// send is one StreamStatus call.
func (s *Sender) send(ctx context.Context, chunks []*pb.GatewayStatusChunk) error {
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	st, err := s.Client.StreamStatus(cctx)
	if err != nil {
		return err //nolint:wrapcheck // a gRPC status, wrapped by flush
	}
	for _, c := range chunks {
		if err := st.Send(c); err != nil {
			break // the server ended the call; CloseAndRecv has its status
		}
	}
	resp, err := st.CloseAndRecv()
	if err != nil {
		return err //nolint:wrapcheck // a gRPC status, wrapped by flush
	}
	if !resp.GetReceived() {
		return errors.New("the gateway did not confirm the segment")
	}
	return nil
}
