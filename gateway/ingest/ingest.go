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

	"github.com/serviceradar/sync-operator/gateway/results"
	"github.com/serviceradar/sync-operator/gateway/store"
	pb "github.com/serviceradar/sync-operator/proto"
)

// Limits bound one call.
type Limits struct {
	// MaxChunks per call, MaxServices per chunk, MaxBytes of all messages of
	// a call, MaxDevices per call.
	MaxChunks, MaxServices, MaxBytes, MaxDevices int
	// Scanned says that recv has already checked every results message
	// with results.Scan (the gateway does, to charge it before it is
	// decoded), so Read does not scan it again.
	Scanned bool
}

// DefaultLimits allow a 64 MiB segment of at most 100,000 devices in 1 MiB chunks.
var DefaultLimits = Limits{MaxChunks: 128, MaxServices: 16, MaxBytes: 64 << 20, MaxDevices: 100000}

// Call is a read and checked StreamStatus call.
type Call struct {
	// AgentID, and the tenant fields the chunks carried (never trusted).
	AgentID                string
	TenantIDs, TenantSlugs []string
	// ServiceAgentIDs are the services' own agent_id fields, set or empty.
	ServiceAgentIDs []string
	// Messages are the results messages, in order.
	Messages []results.Message
}

// Read receives every chunk of one call from recv and checks the rules. A
// broken rule is an InvalidArgument or ResourceExhausted status error.
func Read(recv func() (*pb.GatewayStatusChunk, error), lim Limits) (Call, error) {
	var c Call
	total, bytes, devices := 0, 0, 0
	for i := 0; ; i++ {
		chunk, err := recv()
		if errors.Is(err, io.EOF) {
			if i == 0 {
				return c, status.Error(codes.InvalidArgument, "the call carried no chunk")
			}
			return c, status.Error(codes.InvalidArgument, "the call ended before its final chunk")
		}
		if err != nil {
			return c, err //nolint:wrapcheck // the stream's own status (cancelled, broken)
		}
		if i >= lim.MaxChunks {
			return c, status.Errorf(codes.ResourceExhausted, "more than %d chunks in one call", lim.MaxChunks)
		}
		if i == 0 {
			c.AgentID, total = chunk.GetAgentId(), int(chunk.GetTotalChunks())
			if total <= 0 {
				return c, status.Error(codes.InvalidArgument, "total_chunks must be greater than zero")
			}
			if total > lim.MaxChunks {
				return c, status.Errorf(codes.ResourceExhausted, "total_chunks %d exceeds %d", total, lim.MaxChunks)
			}
		}
		switch {
		case chunk.GetAgentId() != c.AgentID:
			return c, status.Error(codes.InvalidArgument, "agent_id changed within the call")
		case int(chunk.GetTotalChunks()) != total:
			return c, status.Error(codes.InvalidArgument, "total_chunks changed within the call")
		case int(chunk.GetChunkIndex()) != i:
			return c, status.Errorf(codes.InvalidArgument, "chunk_index %d out of order, want %d", chunk.GetChunkIndex(), i)
		case chunk.GetIsFinal() != (i == total-1):
			return c, status.Errorf(codes.InvalidArgument, "is_final must be set on chunk %d of %d only", total-1, total)
		case len(chunk.GetServices()) > lim.MaxServices:
			return c, status.Errorf(codes.ResourceExhausted, "more than %d services in a chunk", lim.MaxServices)
		}
		c.TenantIDs = append(c.TenantIDs, chunk.GetTenantId())
		c.TenantSlugs = append(c.TenantSlugs, chunk.GetTenantSlug())
		for _, svc := range chunk.GetServices() {
			c.TenantIDs = append(c.TenantIDs, svc.GetTenantId())
			c.TenantSlugs = append(c.TenantSlugs, svc.GetTenantSlug())
			c.ServiceAgentIDs = append(c.ServiceAgentIDs, svc.GetAgentId())
			if svc.GetSource() != results.Source {
				continue // status of other services is not ingested
			}
			if bytes += len(svc.GetMessage()); bytes > lim.MaxBytes {
				return c, status.Errorf(codes.ResourceExhausted, "results of one call exceed %d bytes", lim.MaxBytes)
			}
			parse := results.Parse
			if lim.Scanned {
				parse = results.ParseScanned
			}
			m, err := parse(svc.GetMessage())
			if err != nil {
				return c, status.Errorf(codes.InvalidArgument, "chunk %d: %v", i, err)
			}
			if devices += len(m.Devices); devices > lim.MaxDevices {
				return c, status.Errorf(codes.ResourceExhausted, "more than %d devices in one call", lim.MaxDevices)
			}
			c.Messages = append(c.Messages, m)
		}
		if chunk.GetIsFinal() {
			// Nothing may follow the final chunk.
			if _, err := recv(); !errors.Is(err, io.EOF) {
				if err != nil {
					return c, err //nolint:wrapcheck // the stream's own status
				}
				return c, status.Error(codes.InvalidArgument, "a chunk followed the final chunk")
			}
			return c, nil
		}
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
// metadata (<type>_device_id); the upstream device_id ("partition:ip") is
// IP-based and never identifies a device.
func device(d results.DeviceUpdate, integration string) store.Device {
	out := store.Device{IP: d.IP, Hostname: d.Hostname, IsAvailable: d.IsAvailable, Metadata: d.Metadata,
		DeviceID: d.Metadata[integration+"_device_id"]}
	out.MACs = strings.FieldsFunc(d.MAC+","+d.Metadata["all_macs"], func(r rune) bool { return r == ',' || r == ' ' || r == ';' })
	if t, err := time.Parse(time.RFC3339Nano, d.Timestamp); err == nil {
		out.Seen = t.UTC()
	}
	for key, dst := range map[string]*string{"name": &out.Name, "vendor": &out.Vendor, "manufacturer": &out.Vendor, "model": &out.Model, "os": &out.OS} {
		if v := d.Metadata[key]; v != "" && *dst == "" {
			*dst = v
		}
	}
	return out
}
