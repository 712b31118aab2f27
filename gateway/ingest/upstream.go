package ingest

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/wire/results"
)

// upstreamRunNamespace names the runs the gateway derives from upstream
// calls (UUIDv5 of the source and the upstream run): a run id is per
// source, so a call that merges several sources becomes one run per source,
// and the same upstream run sent again maps to the same runs.
var upstreamRunNamespace = uuid.MustParse("6f0d7c1e-6a55-4d0c-9d1b-2f3c5a7e9b10")

// Upstream turns a streamed call, upstream's array form, into windows that
// the gateway applies as they fill, so that a run of any size is held a
// window at a time (DESIGN.md section 6, UPSTREAM.md):
//
//   - A device is attributed to one of the caller's sources: the one its
//     metadata.integration_source_uid names, or else the only source that
//     fits what it says (its `source` type, its sync_meta.sync_service_id).
//     A device that fits none, or several, refuses the call, naming it.
//   - Devices of one source and one upstream run (sync_meta.sync_run_id, or
//     the call itself for the old sync service, which sends none) are a run
//     of their own, its id derived from both: a call that merges sources is
//     split per source.
//   - A window is applied as a segment numbered by the call's chunk index at
//     which it opened: the same call sent again is acknowledged window by
//     window and changes nothing.
//   - A run with sync_meta completes with its device that says is_final, and
//     is a full fetch (which retracts what it did not report) when every
//     device its total_devices announced has arrived. A run without sync_meta
//     completes with its call, never a full fetch.
//   - `"is_available": false` is not availability: integration sources do not
//     measure it, and the old sync service sends false for every device. A
//     device becomes unavailable by retraction or by an agent's sweep.
//
// A call is one upstream run, as upstream sends it: windows of a run sent
// over several calls would reuse the same segment numbers.
type Upstream struct {
	tenantID, tenantSlug string
	sources              map[string]Source
	lim                  Limits
	// callRun names the run of devices without sync_meta.
	callRun string

	runs    map[runKey]*upstreamRun
	pending int // devices in open windows
	devices int // devices read, for the index a refusal names
}

type runKey struct{ source, run string }

type upstreamRun struct {
	id        string
	src       Source
	meta      bool
	window    []store.Device
	opened    int // the chunk index at which window opened
	devices   int // devices of the run in this call
	announced int // sync_meta.total_devices, 0 when not said
	final     bool
	complete  bool // its completing window has been handed out
}

// NewUpstream starts the windows of a streamed call of a tenant's caller
// whose sources are known by uid. callRun names the run of the devices that
// carry no sync_meta (a new UUID per call).
func NewUpstream(tenantID, tenantSlug string, sources map[string]Source, lim Limits, callRun string) *Upstream {
	return &Upstream{tenantID: tenantID, tenantSlug: tenantSlug, sources: sources, lim: lim.WithStreamDefaults(),
		callRun: callRun, runs: map[runKey]*upstreamRun{}}
}

// Add attributes a chunk's devices to their runs' open windows. A device
// that cannot be attributed, or that names another tenant or partition,
// refuses the call.
func (u *Upstream) Add(c Chunk) error {
	for _, m := range c.Messages {
		for i := range m.Devices {
			d := &m.Devices[i]
			n := u.devices
			u.devices++
			if d.TenantID != "" && d.TenantID != u.tenantID || d.TenantSlug != "" && d.TenantSlug != u.tenantSlug {
				return status.Errorf(codes.PermissionDenied, "chunk %d, device %d: the device update names another tenant", c.Index, n)
			}
			src, err := u.attribute(d)
			if err != nil {
				return status.Errorf(status.Code(err), "chunk %d, device %d: %s", c.Index, n, status.Convert(err).Message())
			}
			if d.Partition != "" && d.Partition != src.Partition {
				return status.Errorf(codes.InvalidArgument, "chunk %d, device %d: partition %q is not the source's %q", c.Index, n, d.Partition, src.Partition)
			}
			key, meta := runKey{source: src.UID, run: u.callRun}, d.SyncMeta != nil && d.SyncMeta.SyncRunID != ""
			if meta {
				key.run = "upstream:" + d.SyncMeta.SyncRunID
			}
			r := u.runs[key]
			if r == nil {
				r = &upstreamRun{id: uuid.NewSHA1(upstreamRunNamespace, []byte(src.UID+"\n"+key.run)).String(), src: src, meta: meta, opened: -1}
				u.runs[key] = r
			}
			if r.complete {
				return status.Errorf(codes.InvalidArgument, "chunk %d, device %d: run %q continues after its final device", c.Index, n, d.SyncMeta.SyncRunID)
			}
			if meta {
				r.final = r.final || d.SyncMeta.IsFinal
				if t := d.SyncMeta.TotalDevices; t > 0 {
					r.announced = t
				}
			}
			if d.IsAvailable != nil && !*d.IsAvailable {
				d.IsAvailable = nil
			}
			if r.opened < 0 {
				r.opened = c.Index
			}
			r.window = append(r.window, device(*d, src.Integration))
			r.devices++
			u.pending++
		}
	}
	return nil
}

// attribute finds the source of a device of the array form.
func (u *Upstream) attribute(d *results.DeviceUpdate) (Source, error) {
	if uid := d.Metadata["integration_source_uid"]; uid != "" {
		src, ok := u.sources[uid]
		if !ok {
			return Source{}, status.Error(codes.PermissionDenied, "integration_source_uid is not a source of this worker")
		}
		if d.SyncMeta != nil && d.SyncMeta.SyncServiceID != "" && d.SyncMeta.SyncServiceID != src.SyncServiceID {
			return Source{}, status.Error(codes.PermissionDenied, "sync_meta.sync_service_id is not this worker's")
		}
		return src, nil
	}
	var found []Source
	for _, src := range u.sources {
		if d.Source != "" && d.Source != src.Integration {
			continue
		}
		if d.SyncMeta != nil && d.SyncMeta.SyncServiceID != "" && d.SyncMeta.SyncServiceID != src.SyncServiceID {
			continue
		}
		found = append(found, src)
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Source{}, status.Errorf(codes.InvalidArgument,
			"no source of this worker fits the device (source %q, sync_service_id %q); name it in metadata.integration_source_uid", d.Source, syncServiceID(d))
	}
	return Source{}, status.Errorf(codes.InvalidArgument,
		"%d sources of this worker fit the device (source %q, sync_service_id %q); name one in metadata.integration_source_uid", len(found), d.Source, syncServiceID(d))
}

func syncServiceID(d *results.DeviceUpdate) string {
	if d.SyncMeta == nil {
		return ""
	}
	return d.SyncMeta.SyncServiceID
}

// Due reports whether the open windows are to be applied now: they hold
// WindowDevices devices, or wire bytes of WindowBytes.
func (u *Upstream) Due(wire int64) bool {
	return u.pending >= u.lim.WindowDevices || wire >= int64(u.lim.WindowBytes)
}

// Windows hands out the open windows as segments of the caller agentID and
// empties them. A run with sync_meta completes with the window of its final
// device; at the call's final chunk (final set, at chunk index last) the
// runs without sync_meta complete too. Runs are handed out in a fixed
// order, so that the same call always makes the same segments.
func (u *Upstream) Windows(agentID string, final bool, last int) []store.Segment {
	keys := make([]runKey, 0, len(u.runs))
	for k := range u.runs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b runKey) int { return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.run, b.run)) })
	var out []store.Segment
	for _, k := range keys {
		r := u.runs[k]
		ends := !r.complete && (r.meta && r.final || !r.meta && final)
		if len(r.window) == 0 && !ends {
			continue
		}
		seg := store.Segment{TenantID: u.tenantID, TenantSlug: u.tenantSlug, AgentID: agentID, RunID: r.id,
			SourceUID: r.src.UID, SyncServiceID: r.src.SyncServiceID, Integration: r.src.Integration, Partition: r.src.Partition,
			Segment: r.opened, Devices: r.window}
		if r.opened < 0 {
			seg.Segment = last + 1 // a run that ends without devices in this window: after every chunk
		}
		if ends {
			seg.RunComplete, r.complete = true, true
			if r.meta {
				seg.FullFetch = r.announced == 0 || r.announced == r.devices
				if !seg.FullFetch {
					seg.Error = fmt.Sprintf("the upstream run announced %d devices and sent %d", r.announced, r.devices)
				}
			}
		}
		out = append(out, seg)
		r.window, r.opened = nil, -1
	}
	u.pending = 0
	return out
}
