// Package chunk sends one sync run's devices to the gateway as StreamStatus
// segments (DESIGN.md section 6): devices are encoded as they arrive, a
// segment is sent when it holds SegmentDevices devices or MaxSegmentChunks
// chunks (within the gateway's per-call limits), each of its chunks
// carries about ChunkBytes of results (never more than the gRPC limit), and
// a failed segment is sent again with backoff under the same segment number,
// which the gateway applies at most once. Memory holds one segment at most.
package chunk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/serviceradar/sync-operator/gateway/results"
	pb "github.com/serviceradar/sync-operator/proto"
)

// Defaults of a Sender.
const (
	DefaultChunkBytes     = 1 << 20
	DefaultSegmentDevices = 5000
	// MaxChunkBytes keeps a chunk under gRPC's default 4 MiB message limit.
	MaxChunkBytes = 3 << 20
	// MaxSegmentChunks, MaxSegmentBytes and MaxSegmentDevices keep one
	// StreamStatus call within the gateway's limits (ingest.DefaultLimits:
	// 128 chunks, 64 MiB, 100,000 devices), whatever SegmentDevices and
	// ChunkBytes say: a segment closes at 100 chunks or 48 MiB of them.
	MaxSegmentChunks  = 100
	MaxSegmentBytes   = 48 << 20
	MaxSegmentDevices = 50000
	// MaxErrorBytes bounds the run error a final segment carries (the
	// IntegrationSource's lastError holds at most 1024 characters).
	MaxErrorBytes = 1024
	// chunkOverhead is what a chunk holds besides its devices: the sync_meta
	// with the longest error (JSON escaping can make a byte six) and the
	// JSON around them.
	chunkOverhead = 512 + 6*MaxErrorBytes
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
	// Attempts bounds the sends of one segment (default 8); MinBackoff and
	// MaxBackoff space them (defaults 200 ms and 30 s).
	Attempts               int
	MinBackoff, MaxBackoff time.Duration
	// InFlight is how many segments may be on their way at once (default 2):
	// the next one is encoded and sent while the gateway applies the last.
	// The final segment waits for all of them, so retraction sees the whole run.
	InFlight int

	pending [][]byte // encoded devices of the open segment
	segment int
	// open is the open segment's chunk count and the bytes of its last
	// chunk, packed as chunks packs them.
	openChunks, openBytes int

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

// Add queues a device and sends the segment once it is full.
func (s *Sender) Add(ctx context.Context, d results.DeviceUpdate) error {
	raw, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding device: %w", err)
	}
	if err := s.err(); err != nil {
		return err
	}
	if s.openChunks == 0 || s.openBytes+len(raw)+2 > s.chunkBytes() {
		s.openChunks++
		s.openBytes = chunkOverhead
	}
	s.openBytes += len(raw) + 1
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

// permanent reports errors that sending again cannot fix.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted, codes.FailedPrecondition:
		return true
	}
	return false
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
	s.pending, s.openChunks, s.openBytes = s.pending[:0], 0, 0
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
	b := wait.Backoff{Duration: minB, Factor: 2, Jitter: 0.3, Steps: attempts, Cap: maxB}
	for attempt := 1; ; attempt++ {
		err := s.send(ctx, chunks)
		if err == nil {
			return nil
		}
		if permanent(err) || ctx.Err() != nil || attempt >= attempts {
			return fmt.Errorf("segment %d (attempt %d): %w", segment, attempt, err)
		}
		t := time.NewTimer(b.Step())
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
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
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
