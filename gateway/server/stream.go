package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"google.golang.org/protobuf/proto"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/catalog"
	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/gateway/runstatus"
	"github.com/serviceradar/sync-operator/gateway/sourcemetrics"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/results"
)

// StreamStatus ingests the device results of a sync worker, or the sweep
// results of an agent. The caller is authorized by its certificate before
// anything of the call is read (gRPC allocates a message only when it is
// read, so a caller that is neither an enrolled sync worker nor an agent of
// an onboarded tenant never gets one allocated), then admitted: a stream of
// its own and of the replica's, and a reservation of the ingest budget for
// the chunk being received. Every chunk is checked as it arrives (its agent
// and tenant fields, its bytes against the call's limit, its memory against
// the replica's and the caller's ingest budget, before it is decoded) and
// against the stream rules.
//
// A worker's call in our object form is one segment, applied in one
// transaction once the whole call has been read; a refused, timed out or
// cancelled call commits nothing. A call in upstream's array form (a whole
// run in one call, of any size) is applied window by window as it arrives
// (ingest.Upstream), each window a segment of its own, so the gateway holds
// one window at a time; a call that breaks a rule part-way keeps the windows
// it committed (sent again, they change nothing) and its runs stay
// incomplete, which retracts nothing. An agent's call is handled chunk by
// chunk (agentStream). Reading is bounded by Admission.CallTimeout (for a
// streamed call: per window), applying by Admission.ApplyTimeout.
//
// The chunks are read on the handler's goroutine, so that nothing uses the
// stream after the handler returns (gRPC does not allow it); the read
// deadline ends a Recv that waits through the stream's context, which
// InTapHandle makes cancellable by the handler.
func (s *Server) StreamStatus(stream pb.AgentGatewayService_StreamStatusServer) error {
	ctx := stream.Context()
	if s.o.Store == nil {
		return status.Error(codes.Unavailable, "this gateway has no device store configured")
	}
	reading, ok := ctx.Value(readContextKey{}).(*readContext)
	if !ok {
		// Without it a caller that sends nothing would hold its stream,
		// and its share of the budget, for as long as it likes.
		s.o.Log.Error(errNoTap, "refusing StreamStatus")
		return status.Error(codes.Unavailable, "this gateway cannot bound StreamStatus calls")
	}
	caller, err := s.peer(ctx)
	if err != nil {
		return s.unauthenticated(err)
	}
	e, agentTenant, err := s.statusCaller(ctx, caller)
	if err != nil {
		return err // logged where it was refused
	}
	release, limit := s.statusStreams.take(caller.String())
	if limit != "" {
		return s.throttle(caller, limit, "too many StreamStatus calls in flight")
	}
	defer release()
	s.o.Metrics.StatusStreams.Inc()
	defer s.o.Metrics.StatusStreams.Dec()
	tenantID := agentTenant
	if e != nil {
		tenantID = e.TenantID
	}
	in := &intake{s: s, id: caller, tenantID: tenantID, recv: stream.Recv, charge: &charge{b: s.ingest, caller: caller.String()}}
	defer in.charge.close()
	// The chunk being received, and then decoded, is reserved for the whole
	// call: its frames, the message gRPC decodes them into while its results
	// are decoded. A call that cannot have it is refused before it is read.
	if limit := in.charge.take(int64(s.o.Admission.MaxMessageBytes)); limit != "" {
		return s.throttleIngest(caller, limit, int64(s.o.Admission.MaxMessageBytes))
	}
	in.reserved = int64(s.o.Admission.MaxMessageBytes)
	r := &reader{s: s, ctx: ctx, in: in, reading: reading}
	r.deadline = s.o.Clock.AfterFunc(s.o.Admission.CallTimeout, reading.expire)
	lim := s.o.Limits
	lim.Scanned = true // in.next scans every results message to charge it
	if e == nil {
		return s.agentStream(stream, r, lim)
	}
	rd := ingest.NewReader(in.next, lim)
	first, err := rd.Next()
	if err == nil && rd.Streaming() {
		return s.streamUpstream(stream, r, e, rd, first)
	}
	var call ingest.Call
	if err == nil {
		call, err = rd.Rest(&first)
	}
	if err := r.done(err); err != nil {
		return err
	}
	id := in.id
	sources, keys := sourcesOf(e)
	seg, err := ingest.Segment(call, e.TenantID, id.TenantSlug, sources, uuid.NewString)
	if err != nil {
		return s.refuse(id, status.Code(err), "%s", status.Convert(err).Message())
	}
	if err := s.apply(ctx, id, keys, seg); err != nil {
		return err
	}
	return stream.SendAndClose(&pb.GatewayStatusResponse{Received: true}) //nolint:wrapcheck // the stream's own status
}

// sourcesOf are a worker's sources by uid, and their keys (namespace/name).
func sourcesOf(e *catalog.Entry) (map[string]ingest.Source, map[string]string) {
	sources := map[string]ingest.Source{}
	keys := map[string]string{}
	for key, src := range e.Bundle.Sources {
		sources[src.IntegrationSourceUID] = ingest.Source{UID: src.IntegrationSourceUID, Integration: src.Type, Partition: src.Partition, SyncServiceID: src.SyncServiceID}
		keys[src.IntegrationSourceUID] = key
	}
	return sources, keys
}

// reader bounds the reading of one call by its read deadline.
type reader struct {
	s        *Server
	ctx      context.Context
	in       *intake
	reading  *readContext
	deadline clock.Timer
}

// done ends a stretch of reading (the whole call, or one window of a
// streamed call) that ended with err: nil when it was read in time and
// without a broken rule, else the call's answer.
func (r *reader) done(err error) error {
	s, in := r.s, r.in
	if !r.deadline.Stop() {
		// The deadline ended the reading (a Recv that returned, for the
		// last chunk even, may have lost the race): gRPC has answered
		// DeadlineExceeded already.
		return s.refuse(in.id, codes.DeadlineExceeded, "the call took longer than %s to send its chunks", s.o.Admission.CallTimeout)
	}
	if r.ctx.Err() != nil {
		return status.FromContextError(r.ctx.Err()).Err() //nolint:wrapcheck // a gRPC status: the caller went away
	}
	if err != nil {
		if in.refused {
			return err // logged where it was refused
		}
		st := status.Convert(err)
		s.o.Log.Info("refused", "caller", Clip(in.id.String()), "code", st.Code().String(), "reason", Clip(st.Message()))
		return status.Error(st.Code(), Clip(st.Message()))
	}
	return nil
}

// again starts the read deadline of the next stretch of reading.
func (r *reader) again() {
	r.deadline = r.s.o.Clock.AfterFunc(r.s.o.Admission.CallTimeout, r.reading.expire)
}

// streamUpstream applies a call in upstream's array form window by window:
// when a window fills (ingest.Limits.WindowDevices or WindowBytes) and at
// the final chunk, its segments are applied and the memory its chunks were
// charged is given back, so that a call of any size holds one window.
func (s *Server) streamUpstream(stream pb.AgentGatewayService_StreamStatusServer, r *reader, e *catalog.Entry, rd *ingest.Reader, ch ingest.Chunk) error {
	in := r.in
	id := in.id
	sources, keys := sourcesOf(e)
	up := ingest.NewUpstream(e.TenantID, id.TenantSlug, sources, s.o.Limits, uuid.NewString())
	for {
		if err := up.Add(ch); err != nil {
			r.deadline.Stop()
			return s.refuse(id, status.Code(err), "%s", status.Convert(err).Message())
		}
		if ch.Final || up.Due(in.wire) || in.charge.held()-in.reserved >= s.windowCharge() {
			if err := r.done(nil); err != nil {
				return err
			}
			for _, seg := range up.Windows(rd.AgentID(), ch.Final, ch.Index) {
				if err := s.apply(r.ctx, id, keys, seg); err != nil {
					return err
				}
				s.o.Metrics.StatusWindows.Inc()
			}
			in.release()
			if ch.Final {
				return stream.SendAndClose(&pb.GatewayStatusResponse{Received: true}) //nolint:wrapcheck // the stream's own status
			}
			r.again()
		}
		var err error
		if ch, err = rd.Next(); err != nil {
			return r.done(err)
		}
	}
}

// windowCharge is the ingest memory at which a streamed call's window is
// applied: a quarter of what one caller may hold, so that a caller's
// streamed calls fit beside each other.
func (s *Server) windowCharge() int64 {
	a := s.o.Admission
	return min(a.IngestBytesPerCaller, a.IngestBytes) / 4
}

// apply applies one segment and records its run when it finished one. Its
// error is the call's answer.
func (s *Server) apply(ctx context.Context, id identity.Identity, keys map[string]string, seg store.Segment) error {
	// Applying has its own bound, not what is left of the read deadline: a
	// segment read in time lands however slow the database (the caller's
	// context still ends it when the caller goes away).
	actx, cancel := context.WithTimeoutCause(ctx, s.o.Admission.ApplyTimeout, errApplyTimeout)
	defer cancel()
	limit, dry := s.sourceSettings(keys[seg.SourceUID], seg.SourceUID)
	if seg.RunComplete && seg.FullFetch {
		seg.MaxRetractPercent = &limit
	}
	// A run is dry when its worker says so or its source is in dry-run mode:
	// a worker that has not seen the mode yet writes nothing either.
	seg.DryRun = seg.DryRun || dry
	began := s.o.Clock.Now()
	applied, err := s.o.Store.ApplySegment(actx, seg)
	outcome := func(o string) { s.o.Metrics.IngestSegments.WithLabelValues(id.TenantSlug, o).Inc() }
	var invalid *store.InvalidSegmentError
	switch {
	case errors.Is(err, store.ErrRunSource):
		outcome(SegmentRefused)
		return s.refuse(id, codes.InvalidArgument, "sync_run_id belongs to another source")
	case errors.As(err, &invalid):
		// It can never land: sending it again would fail the same way.
		outcome(SegmentRefused)
		return s.refuse(id, codes.InvalidArgument, "the segment can never be stored: %s", invalid.Reason)
	case errors.Is(err, store.ErrInvalidSlug), errors.Is(err, store.ErrTenantGone):
		// Not until the Tenant changes: retrying at once cannot help.
		outcome(SegmentRefused)
		return s.refuse(id, codes.FailedPrecondition, "the tenant has no device store: %s", err.Error())
	case actx.Err() != nil:
		outcome(SegmentFailed)
		return s.ended(actx, id)
	case err != nil:
		outcome(SegmentFailed)
		s.o.Log.Error(err, "applying a segment", "caller", id.String(), "run", Clip(seg.RunID), "segment", seg.Segment)
		return status.Error(codes.Unavailable, "applying the segment failed; send it again")
	}
	if applied.Duplicate {
		outcome(SegmentDuplicate)
	} else {
		outcome(SegmentApplied)
		s.o.Metrics.ApplySeconds.WithLabelValues(id.TenantSlug).Observe(s.o.Clock.Since(began).Seconds())
	}
	s.o.Log.V(1).Info("segment applied", "caller", id.String(), "run", Clip(seg.RunID), "segment", seg.Segment,
		"devices", applied.Devices, "merges", applied.Merges, "duplicate", applied.Duplicate)
	if applied.Refused > 0 {
		s.o.Log.Info("device updates refused", "caller", id.String(), "run", Clip(seg.RunID), "segment", seg.Segment,
			"refused", applied.Refused, "first", applied.RefusedReason)
	}
	if applied.DryRun != nil {
		s.o.Log.Info("dry run evaluated", "caller", id.String(), "run", Clip(seg.RunID), "source", keys[seg.SourceUID],
			"created", applied.DryRun.Created, "updated", applied.DryRun.Updated, "merged", applied.DryRun.Merged,
			"retracted", applied.DryRun.Retracted)
		if err := s.recordDryRun(actx, keys[seg.SourceUID], seg, applied.DryRun); err != nil {
			s.o.Log.Error(err, "recording dry run status", "caller", id.String(), "run", Clip(seg.RunID))
		}
	}
	if applied.Run != nil {
		if applied.Run.Held != nil {
			s.o.Log.Info("retraction held", "caller", id.String(), "run", Clip(seg.RunID), "source", keys[seg.SourceUID],
				"wouldRetract", applied.Run.Held.Devices, "of", applied.Run.Held.Of, "maxRetractPercent", applied.Run.Held.Limit)
		}
		if err := s.recordRun(actx, keys[seg.SourceUID], seg, applied.Run); err != nil {
			s.o.Log.Error(err, "recording run status", "caller", id.String(), "run", Clip(seg.RunID))
		}
	}
	return nil
}

// errApplyTimeout is the cause of a StreamStatus call's end at
// Admission.ApplyTimeout.
var errApplyTimeout = errors.New("applying the segment exceeded the gateway's apply timeout")

// errNoTap is logged when StreamStatus is served by a gRPC server without
// InTapHandle.
var errNoTap = errors.New("the gRPC server was built without grpc.InTapHandle(server.InTapHandle)")

// readContextKey is the context key of a StreamStatus stream's readContext.
type readContextKey struct{}

// readContext is the context of a StreamStatus stream: its parent's, which
// gRPC ends with the stream, or ended earlier, as by a deadline, when the
// handler's read deadline passes. A Recv that waits returns then
// (DeadlineExceeded, which gRPC answers the caller), while the handler
// still holds the stream. Value finds it under readContextKey.
type readContext struct {
	context.Context // the parent

	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error
}

func newReadContext(parent context.Context) *readContext {
	r := &readContext{Context: parent, done: make(chan struct{})}
	// Registered until the parent ends, which it does with the stream.
	context.AfterFunc(parent, func() { r.end(parent.Err()) })
	return r
}

// Done is closed when the parent ends or the read deadline passes.
func (r *readContext) Done() <-chan struct{} { return r.done }

// Err is the parent's error, or context.DeadlineExceeded once the read
// deadline passed first.
func (r *readContext) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Value is the parent's, and r itself under readContextKey.
func (r *readContext) Value(key any) any {
	if key == (readContextKey{}) {
		return r
	}
	return r.Context.Value(key)
}

// expire ends the context as its read deadline.
func (r *readContext) expire() { r.end(context.DeadlineExceeded) }

func (r *readContext) end(err error) {
	r.once.Do(func() {
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		close(r.done)
	})
}

// InTapHandle must be installed on the gRPC server that serves this
// package's Server (grpc.InTapHandle(server.InTapHandle)): it gives each
// StreamStatus stream a context that the handler can end at the call's read
// deadline, which ends a Recv that waits on it while the handler keeps the
// stream until that Recv has returned (nothing may use a stream after its
// handler returns). Other methods pass through untouched. It runs on the
// connection's reading goroutine and does not block.
func InTapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != pb.AgentGatewayService_StreamStatus_FullMethodName {
		return ctx, nil
	}
	return newReadContext(ctx), nil
}

// ended is the answer to a call whose context ended while its segment was
// being applied: the caller went away, or applying ran out of time.
func (s *Server) ended(ctx context.Context, caller identity.Identity) error {
	if errors.Is(context.Cause(ctx), errApplyTimeout) {
		return s.refuse(caller, codes.DeadlineExceeded, "applying the segment took longer than %s; send it again", s.o.Admission.ApplyTimeout)
	}
	return status.FromContextError(ctx.Err()).Err() //nolint:wrapcheck // a gRPC status
}

// throttleIngest answers a call over the ingest budget, the replica's or
// its caller's, or a call that alone needs more than either (need bytes
// so far), which is refused for good.
func (s *Server) throttleIngest(caller identity.Identity, limit string, need int64) error {
	switch limit {
	case LimitCallIngestMemory:
		a := s.o.Admission
		s.o.Metrics.Throttled.WithLabelValues(limit).Inc()
		return s.refuse(caller, codes.ResourceExhausted,
			"a call needs %d bytes of ingest memory, over ingest-memory-bytes-per-caller (%d); send smaller segments",
			need, min(a.IngestBytesPerCaller, a.IngestBytes))
	case LimitCallerIngestMemory:
		return s.throttle(caller, limit, "this caller's calls hold as many device updates as one caller may")
	}
	return s.throttle(caller, limit, "the gateway holds as many device updates as it may")
}

// throttle answers a call over an Admission limit.
func (s *Server) throttle(caller identity.Identity, limit, format string, args ...any) error {
	s.o.Metrics.Throttled.WithLabelValues(limit).Inc()
	s.o.Log.Info("throttled", "caller", Clip(caller.String()), "limit", limit)
	return exhausted(s.o.Admission.RetryAfter, format, args...)
}

// intake hands the chunks of one call to ingest.Read, checking each before
// it goes further: the first chunk's agent_id must be the caller's
// component id (a caller naming another never gets a second chunk read),
// tenant and agent fields are compared as they arrive, and each chunk is
// charged to the call's byte limit and to the ingest budget before its
// results are decoded.
type intake struct {
	s        *Server
	id       identity.Identity // the caller, authorized
	tenantID string            // its tenant's id
	recv     func() (*pb.GatewayStatusChunk, error)
	charge   *charge
	reserved int64 // the call's reservation, which release keeps
	// Set by next, read once ingest.Read has returned.
	chunks  int
	wire    int64 // wire bytes since the call's start or the last release
	refused bool  // the error next returned was logged
}

// release gives back what the chunks read so far were charged (a streamed
// call's window, once applied), keeping the call's reservation.
func (in *intake) release() {
	in.charge.shrink(in.reserved)
	in.wire = 0
}

// next is the recv function of ingest.Read.
func (in *intake) next() (*pb.GatewayStatusChunk, error) {
	chunk, err := in.recv()
	if err != nil {
		return nil, err
	}
	in.s.o.Metrics.StatusChunks.Inc()
	if in.chunks++; in.chunks == 1 && chunk.GetAgentId() != in.id.ComponentID {
		in.refused = true
		return nil, in.s.agentMismatch(in.id)
	}
	if err := in.check(chunk); err != nil {
		in.refused = true
		return nil, err
	}
	return chunk, nil
}

// check compares a chunk's tenant and agent fields with the certificate and
// charges its bytes.
func (in *intake) check(chunk *pb.GatewayStatusChunk) error {
	s, id := in.s, in.id
	if contradicts(chunk.GetTenantId(), chunk.GetTenantSlug(), in.tenantID, id.TenantSlug) {
		return s.refuse(id, codes.PermissionDenied, "tenant fields in the request contradict the certificate")
	}
	size := int64(proto.Size(chunk))
	var decoded int64
	for _, svc := range chunk.GetServices() {
		if contradicts(svc.GetTenantId(), svc.GetTenantSlug(), in.tenantID, id.TenantSlug) {
			return s.refuse(id, codes.PermissionDenied, "tenant fields in the request contradict the certificate")
		}
		if svc.GetAgentId() != "" && svc.GetAgentId() != id.ComponentID {
			return s.refuse(id, codes.PermissionDenied, "services[].agent_id does not match the certificate's component id")
		}
		if svc.GetSource() != results.Source && svc.GetServiceType() != results.SweepServiceType {
			continue // not decoded
		}
		shape, err := results.Scan(svc.GetMessage())
		if err != nil {
			return s.refuse(id, codes.InvalidArgument, "chunk %d: %v", in.chunks-1, err)
		}
		decoded += shape.Footprint()
	}
	s.o.Metrics.IngestBytes.WithLabelValues(id.TenantSlug).Add(float64(size))
	if in.wire += size; in.wire > int64(s.o.Limits.MaxBytes) {
		return s.refuse(id, codes.ResourceExhausted, "the chunks of one call exceed %d bytes", s.o.Limits.MaxBytes)
	}
	if limit := in.charge.take(size + decoded); limit != "" {
		return s.throttleIngest(id, limit, in.charge.held()+size+decoded)
	}
	return nil
}

// recordRun writes a finished run to its IntegrationSource's status by
// server-side apply under the gateway's field manager: once per run, with
// the source's run history (runstatus).
func (s *Server) recordRun(ctx context.Context, key string, seg store.Segment, run *store.Run) error {
	ns, name, ok := strings.Cut(key, "/")
	if !ok || s.o.Status == nil {
		return nil
	}
	w := &runstatus.Writer{Status: s.o.Status, Reader: s.o.Reader, Store: s.o.Store, FieldOwner: FieldOwner}
	nn := types.NamespacedName{Namespace: ns, Name: name}
	err := w.Record(ctx, nn, seg.TenantSlug, seg.SourceUID, run.Available)
	s.observeRun(ctx, nn, seg, run)
	return err //nolint:wrapcheck // names the run and source
}

// observeRun counts a finished run in the source's metrics and records its
// event, from the run's record in the store and the source in the cache.
func (s *Server) observeRun(ctx context.Context, key types.NamespacedName, seg store.Segment, run *store.Run) {
	if s.o.Events == nil && s.o.Sources == nil {
		return
	}
	src := &v1alpha1.IntegrationSource{}
	if err := s.o.Reader.Get(ctx, key, src); err != nil || string(src.UID) != seg.SourceUID {
		return // gone, or another source of that name by now
	}
	runs, err := s.o.Store.Runs(ctx, seg.TenantSlug, seg.SourceUID, recentRuns)
	if err != nil {
		s.o.Log.Error(err, "reading a finished run", "source", key.String(), "run", Clip(seg.RunID))
		return
	}
	i := slices.IndexFunc(runs, func(r store.RunRecord) bool { return r.RunID == run.RunID })
	if i < 0 {
		return
	}
	s.o.Sources.RunFinished(sourcemetrics.Of(src, seg.TenantSlug), runs[i])
	s.o.Events.RunFinished(src, runs[i])
}

// recentRuns is how many of a source's newest runs observeRun looks
// through for the one that just finished (others of the source may have
// finished since, on other replicas).
const recentRuns = 4

// sourceSettings are the retraction brake of a source (key namespace/name)
// and whether it is in dry-run mode, from the informer cache: its
// spec.maxRetractPercent and spec.dryRun, or the default brake and no dry
// run when the cache does not have it.
func (s *Server) sourceSettings(key, uid string) (retractLimit int, dryRun bool) {
	ns, name, _ := strings.Cut(key, "/")
	src := &v1alpha1.IntegrationSource{}
	if s.o.Reader == nil || s.o.Reader.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, src) != nil || string(src.UID) != uid {
		return v1alpha1.DefaultMaxRetractPercent, false
	}
	return src.Spec.RetractLimit(), src.Spec.DryRun
}

// recordDryRun writes the dry run a segment just finished, rec, to its
// source's status.dryRun.
func (s *Server) recordDryRun(ctx context.Context, key string, seg store.Segment, rec *store.DryRunRecord) error {
	ns, name, ok := strings.Cut(key, "/")
	if !ok || s.o.Status == nil {
		return nil
	}
	w := &runstatus.Writer{Status: s.o.Status, Reader: s.o.Reader, FieldOwner: FieldOwner}
	return w.RecordDryRun(ctx, types.NamespacedName{Namespace: ns, Name: name}, seg.SourceUID, rec) //nolint:wrapcheck // names the source
}
