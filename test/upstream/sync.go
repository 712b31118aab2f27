package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	pb "github.com/serviceradar/sync-operator/proto"
)

// Upstream's result streams (UPSTREAM.md, "Device results it sends").
const (
	// MaxChunkBytes is about how large a chunk's JSON array grows before
	// upstream clients start the next chunk.
	MaxChunkBytes = 3 << 20
	// SyncService is the service name and type of device results.
	SyncService = "sync"
	// SweepService is the service type of an agent's sweep results.
	SweepService = "sweep"
	// ResultsSource is the GatewayServiceStatus source of results messages.
	// UPSTREAM.md does not state it; the gateway ingests only messages of
	// this source, as our own workers send them.
	ResultsSource = "results"
)

// Device is one device update as upstream's sync clients serialise it:
// a plain object in a JSON array, without integration_source_uid.
type Device struct {
	DeviceID    string            `json:"device_id"`
	IP          string            `json:"ip"`
	Source      string            `json:"source"`
	AgentID     string            `json:"agent_id"`
	GatewayID   string            `json:"gateway_id"`
	Partition   string            `json:"partition"`
	ServiceType string            `json:"service_type"`
	ServiceID   string            `json:"service_id"`
	Timestamp   string            `json:"timestamp"`
	Hostname    string            `json:"hostname,omitempty"`
	MAC         string            `json:"mac,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// IsAvailable is omitted by the agent's sync runtime and always false
	// from the old sync service (Run.Legacy sets it).
	IsAvailable *bool `json:"is_available,omitempty"`
	Confidence  int   `json:"confidence"`
	// SyncMeta is added to every device by the agent's sync runtime, never
	// by the old sync service.
	SyncMeta *SyncMeta `json:"sync_meta,omitempty"`
}

// SyncMeta is the per-device run information of the agent's sync runtime.
type SyncMeta struct {
	SyncServiceID string `json:"sync_service_id"`
	SyncRunID     string `json:"sync_run_id"`
	ChunkIndex    int    `json:"chunk_index"`
	TotalChunks   int    `json:"total_chunks"`
	TotalDevices  int    `json:"total_devices"`
	IsFinal       bool   `json:"is_final"`
}

// Run is one sync run as an upstream client sends it: a whole run in ONE
// StreamStatus call, its devices in chunks of up to ChunkBytes.
type Run struct {
	// Devices is how many devices the run has; Device returns device i
	// (StreamSync fills what the client adds itself: agent, service,
	// partition, timestamp, availability and sync_meta).
	Devices int
	Device  func(i int) Device
	// SyncServiceID and RunID fill sync_meta in the agent's form.
	SyncServiceID, RunID string
	// Legacy sends the old sync service's form instead: no sync_meta and
	// "is_available": false on every device (its callers merge several
	// sources in one call).
	Legacy bool
	// ChunkBytes bounds a chunk's JSON array (default MaxChunkBytes).
	ChunkBytes int
}

// device is device i of the run as it goes on the wire in chunk k of n.
func (a *Agent) device(r Run, i, k, n int) Device {
	d := r.Device(i)
	d.AgentID = a.cfg.AgentID
	d.ServiceType, d.ServiceID = SyncService, SyncService
	if d.Partition == "" {
		d.Partition = a.cfg.Partition
	}
	if d.Timestamp == "" {
		d.Timestamp = time.Now().UTC().Format(time.RFC3339)
	}
	if r.Legacy {
		no := false
		d.IsAvailable, d.SyncMeta = &no, nil
		return d
	}
	d.IsAvailable = nil
	d.SyncMeta = &SyncMeta{SyncServiceID: r.SyncServiceID, SyncRunID: r.RunID, ChunkIndex: k, TotalChunks: n,
		TotalDevices: r.Devices, IsFinal: k == n-1}
	return d
}

// chunkBounds splits the run into chunks of at most limit bytes of JSON
// array: the index of each chunk's first device, then r.Devices. Each
// device is measured with sync_meta numbers at least as wide as the real
// ones, so that no chunk outgrows its bound once they are filled in; the
// devices themselves are not kept, so a run of any size is sent in the
// memory of one chunk.
func (a *Agent) chunkBounds(r Run, limit int) ([]int, error) {
	const wide = 1 << 30
	bounds := []int{0}
	size := 2 // []
	for i := range r.Devices {
		raw, err := json.Marshal(a.device(r, i, wide, wide+2))
		if err != nil {
			return nil, fmt.Errorf("encoding device %d: %w", i, err)
		}
		if n := len(raw) + 1; size+n > limit && i > bounds[len(bounds)-1] {
			bounds, size = append(bounds, i), 2
		}
		size += len(raw) + 1
	}
	return append(bounds, r.Devices), nil
}

// StreamSync sends a whole run in one StreamStatus call, as upstream's sync
// clients do: service name and type "sync", each chunk one JSON array of
// device updates, chunk_index, total_chunks and is_final on every
// GatewayStatusChunk along with the agent's runtime fields. It returns how
// many chunks the call had. A failed call drops the connection.
func (a *Agent) StreamSync(ctx context.Context, r Run) (int, error) {
	if r.Devices <= 0 {
		return 0, errors.New("a run without devices")
	}
	limit := r.ChunkBytes
	if limit <= 0 {
		limit = MaxChunkBytes
	}
	bounds, err := a.chunkBounds(r, limit)
	if err != nil {
		return 0, err
	}
	n := len(bounds) - 1
	_, err = call(a, func(c pb.AgentGatewayServiceClient) (*pb.GatewayStatusResponse, error) {
		return a.stream(ctx, c, n, func(k int) ([]*pb.GatewayServiceStatus, error) {
			devs := make([]Device, 0, bounds[k+1]-bounds[k])
			for i := bounds[k]; i < bounds[k+1]; i++ {
				devs = append(devs, a.device(r, i, k, n))
			}
			raw, err := json.Marshal(devs)
			if err != nil {
				return nil, fmt.Errorf("encoding chunk %d: %w", k, err)
			}
			return []*pb.GatewayServiceStatus{{ServiceName: SyncService, ServiceType: SyncService, Source: ResultsSource,
				Available: true, AgentId: a.cfg.AgentID, Partition: a.cfg.Partition, Message: raw}}, nil
		})
	})
	return n, err
}

// stream sends one StreamStatus call of n chunks, chunk k's services made
// by services(k) only when it is sent.
func (a *Agent) stream(ctx context.Context, c pb.AgentGatewayServiceClient, n int, services func(k int) ([]*pb.GatewayServiceStatus, error)) (*pb.GatewayStatusResponse, error) {
	st, err := c.StreamStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening StreamStatus: %w", err)
	}
	for k := range n {
		svcs, err := services(k)
		if err != nil {
			return nil, err
		}
		err = st.Send(&pb.GatewayStatusChunk{Services: svcs, AgentId: a.cfg.AgentID, Partition: a.cfg.Partition, Timestamp: time.Now().Unix(),
			ChunkIndex: int32(k), TotalChunks: int32(n), IsFinal: k == n-1, //nolint:gosec // chunk counts are small
			Version: a.cfg.Version, Hostname: a.cfg.Hostname, Os: a.cfg.OS, Arch: a.cfg.Arch})
		if errors.Is(err, io.EOF) {
			break // the gateway answered early: CloseAndRecv has its status
		}
		if err != nil {
			return nil, fmt.Errorf("sending chunk %d of %d: %w", k, n, err)
		}
	}
	resp, err := st.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("StreamStatus: %w", err)
	}
	return resp, nil
}

// PushStatus pushes the agent's ordinary status with its checks, and the
// runtime fields upstream agents set (version, hostname, os, arch, config
// source).
func (a *Agent) PushStatus(ctx context.Context, configSource string, services ...*pb.GatewayServiceStatus) (*pb.GatewayStatusResponse, error) {
	return call(a, func(c pb.AgentGatewayServiceClient) (*pb.GatewayStatusResponse, error) {
		return c.PushStatus(ctx, &pb.GatewayStatusRequest{Services: services, AgentId: a.cfg.AgentID, Partition: a.cfg.Partition,
			Timestamp: time.Now().Unix(), ConfigSource: configSource, Version: a.cfg.Version, Hostname: a.cfg.Hostname, Os: a.cfg.OS, Arch: a.cfg.Arch})
	})
}

// SweepHost is one host of an agent's sweep results.
type SweepHost struct {
	Host        string       `json:"host"`
	Available   bool         `json:"available"`
	PortResults []PortResult `json:"port_results,omitempty"`
	LastSeen    int64        `json:"last_seen,omitempty"`
}

// PortResult is one port's result of a TCP sweep.
type PortResult struct {
	Port      int  `json:"port"`
	Available bool `json:"available"`
}

// sweepSummary is the message of a sweep service: the swept network's
// summary with its hosts.
type sweepSummary struct {
	Network        string      `json:"network"`
	TotalHosts     int         `json:"total_hosts"`
	AvailableHosts int         `json:"available_hosts"`
	LastSweep      int64       `json:"last_sweep"`
	Hosts          []SweepHost `json:"hosts"`
}

// StreamSweep streams the results of a sweep of network (service type
// "sweep") in one call of one chunk.
func (a *Agent) StreamSweep(ctx context.Context, network string, hosts []SweepHost) error {
	up := 0
	for _, h := range hosts {
		if h.Available {
			up++
		}
	}
	raw, err := json.Marshal(sweepSummary{Network: network, TotalHosts: len(hosts), AvailableHosts: up, LastSweep: time.Now().Unix(), Hosts: hosts})
	if err != nil {
		return fmt.Errorf("encoding sweep results: %w", err)
	}
	return a.StreamServices(ctx, &pb.GatewayServiceStatus{ServiceName: "network_sweep", ServiceType: SweepService, Source: ResultsSource,
		Available: true, AgentId: a.cfg.AgentID, Partition: a.cfg.Partition, Message: raw})
}

// StreamServices streams services in one call of one chunk.
func (a *Agent) StreamServices(ctx context.Context, services ...*pb.GatewayServiceStatus) error {
	_, err := call(a, func(c pb.AgentGatewayServiceClient) (*pb.GatewayStatusResponse, error) {
		return a.stream(ctx, c, 1, func(int) ([]*pb.GatewayServiceStatus, error) { return services, nil })
	})
	return err
}

// SyncConfig is config_json as the agent's sync runtime reads it.
type SyncConfig struct {
	AgentID string                  `json:"agent_id"`
	Sources map[string]SourceConfig `json:"sources"`
}

// SourceConfig is one source of the sync runtime's config_json, with
// upstream's names: intervals are duration strings.
type SourceConfig struct {
	Type               string            `json:"type"`
	Endpoint           string            `json:"endpoint"`
	Credentials        map[string]string `json:"credentials"`
	Partition          string            `json:"partition"`
	AgentID            string            `json:"agent_id"`
	GatewayID          string            `json:"gateway_id"`
	SyncServiceID      string            `json:"sync_service_id"`
	InsecureSkipVerify bool              `json:"insecure_skip_verify"`
	PollInterval       string            `json:"poll_interval"`
	DiscoveryInterval  string            `json:"discovery_interval"`
	SweepInterval      string            `json:"sweep_interval"`
}

// ParseSyncConfig reads config_json as the agent's sync runtime does: a
// source without a parseable poll_interval or discovery_interval is skipped
// ("no intervals configured") and named in skipped.
func ParseSyncConfig(configJSON []byte) (c *SyncConfig, skipped []string, err error) {
	c = &SyncConfig{}
	if err := json.Unmarshal(configJSON, c); err != nil {
		return nil, nil, fmt.Errorf("decoding config_json: %w", err)
	}
	for key, src := range c.Sources {
		poll, perr := time.ParseDuration(src.PollInterval)
		disc, derr := time.ParseDuration(src.DiscoveryInterval)
		if perr != nil || derr != nil || (poll <= 0 && disc <= 0) {
			skipped = append(skipped, key)
			delete(c.Sources, key)
		}
	}
	sort.Strings(skipped)
	return c, skipped, nil
}

// Hosts are the addresses of a sweep's device targets (host networks),
// in order, each once.
func (s *Sweep) Hosts() []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range s.Groups {
		for _, d := range g.DeviceTargets {
			p, err := netip.ParsePrefix(d.Network)
			if err != nil || !p.IsSingleIP() || seen[p.Addr().String()] {
				continue
			}
			seen[p.Addr().String()] = true
			out = append(out, p.Addr().String())
		}
	}
	return out
}
