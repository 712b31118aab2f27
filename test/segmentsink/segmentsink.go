// Package segmentsink is a StreamStatus endpoint for worker tests that need
// to see the segments a worker sends rather than what the gateway stores:
// every call is read with the gateway's own reader and limits (ingest.Read,
// ingest.DefaultLimits), so a call that breaks a stream rule fails here as
// it would at the gateway, and segments are recorded per run.
package segmentsink

import (
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/serviceradar/sync-operator/gateway/ingest"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/results"
)

// Segment is one applied segment.
type Segment struct {
	Meta    results.Meta
	Devices []results.DeviceUpdate
}

// Run is the applied segments of one run, by segment number.
type Run struct {
	Source   string
	Segments map[int]Segment
	// Attempts counts the calls of each segment number, refused ones included.
	Attempts map[int]int
}

// Complete reports the run's final segment, if it arrived.
func (r *Run) Complete() (results.Meta, bool) {
	for _, s := range r.Segments {
		if s.Meta.RunComplete {
			return s.Meta, true
		}
	}
	return results.Meta{}, false
}

// Devices counts the devices of every applied segment.
func (r *Run) Devices() int {
	n := 0
	for _, s := range r.Segments {
		n += len(s.Devices)
	}
	return n
}

// Sink records StreamStatus calls. Fail, when set, answers a code to a call
// (OK applies it); a segment number applied twice is refused.
type Sink struct {
	pb.UnimplementedAgentGatewayServiceServer
	Fail func(m results.Meta, attempt int) codes.Code
	// Busy, when set and true for a call, answers it as a gateway at its
	// admission limits does: ResourceExhausted with a RetryInfo of
	// BusyRetry (default 1 ms).
	Busy      func(m results.Meta, attempt int) bool
	BusyRetry time.Duration
	// Delay holds every call this long before it is applied, so a sender's
	// calls overlap.
	Delay time.Duration

	mu          sync.Mutex
	runs        map[string]*Run
	order       []string          // run ids in the order of their first segment
	open        map[string]string // source uid → run id not yet complete
	inFlight    int
	maxInFlight int
	overlaps    []string
}

// Start serves a Sink on a loopback port (plain gRPC: these tests are about
// segments, not identity) and returns it with a client.
func Start(t *testing.T, s *Sink) (*Sink, pb.AgentGatewayServiceClient) {
	t.Helper()
	s.runs, s.open = map[string]*Run{}, map[string]string{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterAgentGatewayServiceServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return s, pb.NewAgentGatewayServiceClient(conn)
}

// StreamStatus reads and records one segment.
func (s *Sink) StreamStatus(stream grpc.ClientStreamingServer[pb.GatewayStatusChunk, pb.GatewayStatusResponse]) error {
	s.mu.Lock()
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	call, err := ingest.Read(stream.Recv, ingest.DefaultLimits)
	if err != nil {
		return err //nolint:wrapcheck // the gateway's status
	}
	if call.Messages[0].Meta == nil {
		return status.Error(codes.InvalidArgument, "no sync_meta")
	}
	meta := *call.Messages[0].Meta
	var devices []results.DeviceUpdate
	for _, m := range call.Messages {
		if m.Meta == nil || *m.Meta != meta {
			return status.Errorf(codes.InvalidArgument, "chunks of one call disagree on sync_meta")
		}
		devices = append(devices, m.Devices...)
	}
	time.Sleep(s.Delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	run, ok := s.runs[meta.SyncRunID]
	if !ok {
		run = &Run{Source: meta.IntegrationSourceUID, Segments: map[int]Segment{}, Attempts: map[int]int{}}
		s.runs[meta.SyncRunID] = run
		s.order = append(s.order, meta.SyncRunID)
		if other, busy := s.open[run.Source]; busy {
			s.overlaps = append(s.overlaps, other+" and "+meta.SyncRunID)
		}
		s.open[run.Source] = meta.SyncRunID
	}
	run.Attempts[meta.Segment]++
	if s.Busy != nil && s.Busy(meta, run.Attempts[meta.Segment]) {
		retry := s.BusyRetry
		if retry <= 0 {
			retry = time.Millisecond
		}
		st, err := status.New(codes.ResourceExhausted, "busy (the test)").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		return st.Err() //nolint:wrapcheck // a gRPC status
	}
	if s.Fail != nil {
		if code := s.Fail(meta, run.Attempts[meta.Segment]); code != codes.OK {
			return status.Error(code, "refused by the test")
		}
	}
	if _, dup := run.Segments[meta.Segment]; dup {
		return status.Errorf(codes.AlreadyExists, "segment %d of run %s applied twice", meta.Segment, meta.SyncRunID)
	}
	run.Segments[meta.Segment] = Segment{Meta: meta, Devices: devices}
	if meta.RunComplete {
		delete(s.open, run.Source)
	}
	return stream.SendAndClose(&pb.GatewayStatusResponse{Received: true}) //nolint:wrapcheck // the stream's own status
}

// Runs returns copies of the runs of a source (every source when empty) in
// the order they began.
func (s *Sink) Runs(source string) []Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Run
	for _, id := range s.order {
		r := s.runs[id]
		if source != "" && r.Source != source {
			continue
		}
		out = append(out, Run{Source: r.Source, Segments: maps.Clone(r.Segments), Attempts: maps.Clone(r.Attempts)})
	}
	return out
}

// MaxInFlight is the most calls the sink held at once.
func (s *Sink) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// Overlaps names runs of one source that were open at the same time (a new
// run's first segment before the last run's final one; a run abandoned
// without its final segment stays open).
func (s *Sink) Overlaps() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.overlaps...)
}
