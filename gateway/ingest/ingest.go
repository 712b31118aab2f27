// Package ingest reads one StreamStatus call and enforces the stream rules
// of DESIGN.md section 6 before anything is committed: agent_id constant
// within the call, total_chunks positive and fixed, chunk_index strictly in
// order, the call ending with its final chunk, and bounded services, bytes
// and devices per call (so a segment fits in memory). It then turns the
// results messages into one segment for the store.
package ingest

import (
	"errors"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/serviceradar/sync-operator/gateway/store"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/results"
)

// Limits bound one call.
type Limits struct {
	// MaxChunks per call, MaxServices per chunk, MaxBytes of all messages of
	// a call, MaxDevices per call. A streamed call (see Reader) is bounded
	// per window instead: MaxDevices then bounds one chunk's devices.
	MaxChunks, MaxServices, MaxBytes, MaxDevices int
	// MaxStreamChunks bounds the chunks of a streamed call: upstream's array
	// form, a whole run in one call of hundreds of chunks, which the gateway
	// applies window by window rather than holding (zero takes
	// DefaultLimits').
	MaxStreamChunks int
	// WindowDevices and WindowBytes close a window of a streamed call: its
	// devices are applied once it holds that many devices or wire bytes, and
	// at the call's final chunk (zero takes DefaultLimits').
	WindowDevices, WindowBytes int
	// Scanned says that recv has already checked every results message
	// with results.Scan (the gateway does, to charge it before it is
	// decoded), so Read does not scan it again.
	Scanned bool
}

// DefaultLimits allow a 64 MiB segment of at most 100,000 devices in 1 MiB
// chunks, and streamed calls of up to 1,048,576 chunks (3 TiB at upstream's
// 3 MiB) applied in windows of 5,000 devices or 8 MiB.
var DefaultLimits = Limits{MaxChunks: 128, MaxServices: 16, MaxBytes: 64 << 20, MaxDevices: 100000,
	MaxStreamChunks: 1 << 20, WindowDevices: 5000, WindowBytes: 8 << 20}

// WithStreamDefaults fills the zero stream limits from DefaultLimits.
func (l Limits) WithStreamDefaults() Limits {
	if l.MaxStreamChunks <= 0 {
		l.MaxStreamChunks = DefaultLimits.MaxStreamChunks
	}
	if l.WindowDevices <= 0 {
		l.WindowDevices = DefaultLimits.WindowDevices
	}
	if l.WindowBytes <= 0 {
		l.WindowBytes = DefaultLimits.WindowBytes
	}
	if l.MaxBytes > 0 {
		// A window closes well before a call's byte limit refuses it.
		l.WindowBytes = min(l.WindowBytes, l.MaxBytes/2)
	}
	return l
}

// Call is a read and checked StreamStatus call.
type Call struct {
	// AgentID is the call's agent_id (the gateway compares it with the
	// caller's certificate as the first chunk arrives).
	AgentID string
	// Messages are the results messages, in order.
	Messages []results.Message
}

// Chunk is one chunk of a call, read and checked against the stream rules.
type Chunk struct {
	// Index is the chunk's index; Final is set on the call's last chunk.
	Index int
	Final bool
	// Messages are its results messages, in order (none from a raw reader).
	Messages []results.Message
	// Services are the chunk's services as received.
	Services []*pb.GatewayServiceStatus
}

// Reader reads the chunks of one call one at a time and checks the stream
// rules as each arrives: agent_id constant, total_chunks positive and fixed,
// chunk_index strictly in order, is_final on the last chunk only, nothing
// after it, bounded services per chunk. The call's first results message
// decides how it is bounded: a call that opens with upstream's array form is
// streamed (Streaming), bounded per chunk and by MaxStreamChunks, and its
// reader applies it as it arrives; any other call is held whole, within
// MaxChunks, MaxBytes and MaxDevices.
type Reader struct {
	recv           func() (*pb.GatewayStatusChunk, error)
	lim            Limits
	next, total    int
	agentID        string
	bytes, devices int
	stream, done   bool
	raw            bool
}

// NewRawReader reads a call whose messages are not device results (an
// agent's): the stream rules hold, its services are handed out undecoded,
// and it may have as many chunks as a streamed call.
func NewRawReader(recv func() (*pb.GatewayStatusChunk, error), lim Limits) *Reader {
	r := NewReader(recv, lim)
	r.raw, r.stream = true, true
	return r
}

// NewReader reads a call from recv.
func NewReader(recv func() (*pb.GatewayStatusChunk, error), lim Limits) *Reader {
	return &Reader{recv: recv, lim: lim.WithStreamDefaults()}
}

// Streaming reports whether the call is streamed: known once its first
// chunk has been read.
func (r *Reader) Streaming() bool { return r.stream }

// AgentID is the call's agent_id, known once its first chunk has been read.
func (r *Reader) AgentID() string { return r.agentID }

// Next reads and checks the next chunk. After the final chunk it makes sure
// nothing follows and returns io.EOF. A broken rule is an InvalidArgument or
// ResourceExhausted status error.
func (r *Reader) Next() (Chunk, error) {
	if r.done {
		return Chunk{}, io.EOF
	}
	i := r.next
	chunk, err := r.recv()
	if errors.Is(err, io.EOF) {
		if i == 0 {
			return Chunk{}, status.Error(codes.InvalidArgument, "the call carried no chunk")
		}
		return Chunk{}, status.Error(codes.InvalidArgument, "the call ended before its final chunk")
	}
	if err != nil {
		return Chunk{}, err //nolint:wrapcheck // the stream's own status (cancelled, broken)
	}
	if i >= r.maxChunks() {
		return Chunk{}, status.Errorf(codes.ResourceExhausted, "more than %d chunks in one call", r.maxChunks())
	}
	if i == 0 {
		r.agentID, r.total = chunk.GetAgentId(), int(chunk.GetTotalChunks())
		if r.total <= 0 {
			return Chunk{}, status.Error(codes.InvalidArgument, "total_chunks must be greater than zero")
		}
	}
	switch {
	case chunk.GetAgentId() != r.agentID:
		return Chunk{}, status.Error(codes.InvalidArgument, "agent_id changed within the call")
	case int(chunk.GetTotalChunks()) != r.total:
		return Chunk{}, status.Error(codes.InvalidArgument, "total_chunks changed within the call")
	case int(chunk.GetChunkIndex()) != i:
		return Chunk{}, status.Errorf(codes.InvalidArgument, "chunk_index %d out of order, want %d", chunk.GetChunkIndex(), i)
	case chunk.GetIsFinal() != (i == r.total-1):
		return Chunk{}, status.Errorf(codes.InvalidArgument, "is_final must be set on chunk %d of %d only", r.total-1, r.total)
	case len(chunk.GetServices()) > r.lim.MaxServices:
		return Chunk{}, status.Errorf(codes.ResourceExhausted, "more than %d services in a chunk", r.lim.MaxServices)
	}
	out := Chunk{Index: i, Final: chunk.GetIsFinal(), Services: chunk.GetServices()}
	devices := 0
	for _, svc := range chunk.GetServices() {
		if r.raw || svc.GetSource() != results.Source {
			continue // status of other services is not ingested
		}
		if i == 0 && len(out.Messages) == 0 {
			// The call's first results message decides how it is bounded.
			r.stream = results.IsArray(svc.GetMessage())
		}
		if !r.stream {
			if r.bytes += len(svc.GetMessage()); r.bytes > r.lim.MaxBytes {
				return Chunk{}, status.Errorf(codes.ResourceExhausted, "results of one call exceed %d bytes", r.lim.MaxBytes)
			}
		} else if !results.IsArray(svc.GetMessage()) {
			return Chunk{}, status.Errorf(codes.InvalidArgument, "chunk %d: a call that opens with the upstream array form carries only arrays", i)
		}
		parse := results.Parse
		if r.lim.Scanned {
			parse = results.ParseScanned
		}
		m, err := parse(svc.GetMessage())
		if err != nil {
			return Chunk{}, status.Errorf(codes.InvalidArgument, "chunk %d: %v", i, err)
		}
		devices += len(m.Devices)
		if r.stream && devices > r.lim.MaxDevices {
			return Chunk{}, status.Errorf(codes.ResourceExhausted, "more than %d devices in one chunk", r.lim.MaxDevices)
		}
		if r.devices += len(m.Devices); !r.stream && r.devices > r.lim.MaxDevices {
			return Chunk{}, status.Errorf(codes.ResourceExhausted, "more than %d devices in one call", r.lim.MaxDevices)
		}
		out.Messages = append(out.Messages, m)
	}
	if i == 0 && r.total > r.maxChunks() {
		return Chunk{}, status.Errorf(codes.ResourceExhausted, "total_chunks %d exceeds %d", r.total, r.maxChunks())
	}
	r.next++
	if out.Final {
		// Nothing may follow the final chunk.
		if _, err := r.recv(); !errors.Is(err, io.EOF) {
			if err != nil {
				return Chunk{}, err //nolint:wrapcheck // the stream's own status
			}
			return Chunk{}, status.Error(codes.InvalidArgument, "a chunk followed the final chunk")
		}
		r.done = true
	}
	return out, nil
}

// maxChunks is the most chunks the call may have.
func (r *Reader) maxChunks() int {
	if r.stream {
		return r.lim.MaxStreamChunks
	}
	return r.lim.MaxChunks
}

// Read receives every chunk of one call from recv and checks the rules,
// holding the whole call. A broken rule is an InvalidArgument or
// ResourceExhausted status error.
func Read(recv func() (*pb.GatewayStatusChunk, error), lim Limits) (Call, error) {
	return NewReader(recv, lim).Rest(nil)
}

// Rest reads the rest of a held call, after first (nil when no chunk has
// been read yet).
func (r *Reader) Rest(first *Chunk) (Call, error) {
	var c Call
	if first != nil {
		c.Messages = append(c.Messages, first.Messages...)
	}
	for {
		ch, err := r.Next()
		if errors.Is(err, io.EOF) && r.done {
			c.AgentID = r.agentID
			return c, nil
		}
		if err != nil {
			return c, err
		}
		c.Messages = append(c.Messages, ch.Messages...)
	}
}

// Source is what the gateway knows about a source the caller may report for.
type Source struct {
	UID, Integration, Partition, SyncServiceID string
}

// Segment builds the store segment of a call. sources are the caller's
// sources by uid; newRunID names a run for the upstream array form, which
// carries none (such a call is its own, never complete, run).
func Segment(c Call, tenantID, tenantSlug string, sources map[string]Source, newRunID func() string) (store.Segment, error) {
	var meta *results.Meta
	for _, m := range c.Messages {
		if m.Meta == nil {
			continue
		}
		if meta != nil && *m.Meta != *meta {
			return store.Segment{}, status.Error(codes.InvalidArgument, "chunks of one call carry different sync_meta")
		}
		meta = m.Meta
	}
	seg := store.Segment{TenantID: tenantID, TenantSlug: tenantSlug, AgentID: c.AgentID}
	var src Source
	if meta != nil {
		if meta.SyncRunID == "" || meta.Segment < 0 {
			return store.Segment{}, status.Error(codes.InvalidArgument, "sync_meta needs sync_run_id and a segment >= 0")
		}
		var ok bool
		if src, ok = sources[meta.IntegrationSourceUID]; !ok {
			return store.Segment{}, status.Error(codes.PermissionDenied, "sync_meta.integration_source_uid is not a source of this worker")
		}
		if meta.SyncServiceID != "" && meta.SyncServiceID != src.SyncServiceID {
			return store.Segment{}, status.Error(codes.PermissionDenied, "sync_meta.sync_service_id is not this worker's")
		}
		seg.RunID, seg.Segment, seg.RunComplete, seg.FullFetch, seg.Error = meta.SyncRunID, meta.Segment, meta.RunComplete, meta.FullFetch, meta.Error
		seg.Mode, seg.DryRun = meta.Mode, meta.DryRun
	} else {
		seg.RunID = newRunID()
	}
	for _, m := range c.Messages {
		for _, d := range m.Devices {
			if d.TenantID != "" && d.TenantID != tenantID || d.TenantSlug != "" && d.TenantSlug != tenantSlug {
				return store.Segment{}, status.Error(codes.PermissionDenied, "a device update names another tenant")
			}
			uid := d.Metadata["integration_source_uid"]
			if meta == nil {
				s, ok := sources[uid]
				if !ok || (src.UID != "" && s.UID != src.UID) {
					return store.Segment{}, status.Error(codes.InvalidArgument, "every device of an array-form call must name the same source of this worker")
				}
				src = s
			} else if uid != "" && uid != src.UID {
				return store.Segment{}, status.Error(codes.InvalidArgument, "a device names another source than sync_meta")
			}
			if d.Partition != "" && d.Partition != src.Partition {
				return store.Segment{}, status.Errorf(codes.InvalidArgument, "device partition %q is not the source's %q", d.Partition, src.Partition)
			}
			seg.Devices = append(seg.Devices, device(d, src.Integration))
		}
	}
	if src.UID == "" {
		return store.Segment{}, status.Error(codes.InvalidArgument, "the call names no source")
	}
	seg.SourceUID, seg.SyncServiceID, seg.Integration, seg.Partition = src.UID, src.SyncServiceID, src.Integration, src.Partition
	return seg, nil
}

// device converts a wire update. The integration's own id comes from
// metadata (<type>_device_id, or <type>_vm_id for a virtual machine); the
// upstream device_id ("partition:ip") is IP-based and never identifies a
// device. An update without ip takes the first of all_ips.
func device(d results.DeviceUpdate, integration string) store.Device {
	out := store.Device{IP: d.IP, Hostname: d.Hostname, IsAvailable: d.IsAvailable, Metadata: d.Metadata,
		DeviceID: d.Metadata[integration+"_device_id"]}
	if vm := d.Metadata[integration+"_vm_id"]; out.DeviceID == "" && vm != "" {
		out.DeviceID, out.DeviceIDType = vm, integration+"_vm_id"
	}
	if out.IP == "" {
		out.IP, _, _ = strings.Cut(d.Metadata["all_ips"], ",")
		out.IP = strings.TrimSpace(out.IP)
	}
	out.MACs = strings.FieldsFunc(d.MAC+","+d.Metadata["all_macs"], func(r rune) bool { return r == ',' || r == ' ' || r == ';' })
	if t, err := time.Parse(time.RFC3339Nano, d.Timestamp); err == nil {
		out.Seen = t.UTC()
	}
	// Columns from metadata, the first key present winning: our workers'
	// keys, then upstream's (operating_system is where upstream puts the OS).
	for _, f := range []struct {
		key string
		dst *string
	}{{"name", &out.Name}, {"vendor", &out.Vendor}, {"manufacturer", &out.Vendor}, {"model", &out.Model}, {"os", &out.OS}, {"operating_system", &out.OS}} {
		if v := d.Metadata[f.key]; v != "" && *f.dst == "" {
			*f.dst = v
		}
	}
	return out
}
