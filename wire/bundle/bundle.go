// Package bundle holds the configuration the gateway serves (DESIGN.md
// section 6): a sync worker's bundle, the sources of its own tenant assigned
// to its SyncService with their credentials, and an agent's config_json with
// its sweep groups; and their canonical (key-sorted) JSON, whose hash is the
// config_version. The gateway builds and encodes these, workers and agents
// decode them: both sides use these types, so the two cannot drift apart. It
// depends on nothing of the project.
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// ScopeTenant is the scope of a bundle that serves one tenant.
const ScopeTenant = "tenant"

// Query is one search of a source.
type Query struct {
	Label      string   `json:"label"`
	Query      string   `json:"query"`
	SweepModes []string `json:"sweep_modes,omitempty"`
}

// Faker configures the synthetic inventory.
type Faker struct {
	Devices      int32 `json:"devices"`
	ChurnPercent int32 `json:"churn_percent"`
	Seed         int64 `json:"seed"`
	// OverlapSeed and OverlapPercent select the devices shared with other
	// generators (spec.faker.overlap); a zero percent shares none.
	OverlapSeed    int64 `json:"overlap_seed,omitempty"`
	OverlapPercent int32 `json:"overlap_percent,omitempty"`
}

// Sweep says how agents sweep a source's devices.
type Sweep struct {
	Enabled     bool     `json:"enabled"`
	Modes       []string `json:"modes,omitempty"`
	Ports       []int32  `json:"ports,omitempty"`
	Networks    []string `json:"networks,omitempty"`
	IntervalSec int64    `json:"interval_sec,omitempty"`
}

// Source is one IntegrationSource as a worker runs it.
type Source struct {
	Type                 string            `json:"type"`
	Endpoint             string            `json:"endpoint,omitempty"`
	Credentials          map[string]string `json:"credentials,omitempty"`
	Queries              []Query           `json:"queries,omitempty"`
	Partition            string            `json:"partition"`
	PollIntervalSec      int64             `json:"poll_interval_sec"`
	DiscoveryIntervalSec int64             `json:"discovery_interval_sec"`
	PageSize             int32             `json:"page_size"`
	NetworkBlacklist     []string          `json:"network_blacklist,omitempty"`
	Faker                *Faker            `json:"faker,omitempty"`
	Sweep                *Sweep            `json:"sweep,omitempty"`
	Paused               bool              `json:"paused,omitempty"`
	// DryRun is spec.dryRun: every run is a full fetch that the gateway
	// evaluates and rolls back, and it does not move the worker's schedule
	// of incremental runs.
	DryRun               bool   `json:"dry_run,omitempty"`
	IntegrationSourceUID string `json:"integration_source_uid"`
	SyncServiceID        string `json:"sync_service_id"`
	// StaleAfterSec is, for armis, how many seconds after its lastSeen a
	// device is still reported available (spec.armis.staleAfter with its
	// default filled in); zero means staleness is off.
	StaleAfterSec int64 `json:"stale_after_sec,omitempty"`
	// NetBox holds a netbox source's settings (spec.netbox), absent when
	// it has none.
	NetBox *NetBox `json:"netbox,omitempty"`

	// The same settings in the names and forms ServiceRadar's agent sync
	// runtime reads (../shared/UPSTREAM.md): it skips a source without
	// poll_interval/discovery_interval strings. Additive: our worker reads
	// the fields above.

	// PollInterval is PollIntervalSec as a Go duration string ("10m0s").
	PollInterval string `json:"poll_interval"`
	// DiscoveryInterval is DiscoveryIntervalSec as a Go duration string.
	DiscoveryInterval string `json:"discovery_interval"`
	// SweepInterval is the sweep interval as a duration string, when sweeping.
	SweepInterval string `json:"sweep_interval,omitempty"`
	// AgentID is the component the source is assigned to (the bundle's agent_id).
	AgentID string `json:"agent_id"`
	// InsecureSkipVerify is always false: the integration's certificate is verified.
	InsecureSkipVerify bool `json:"insecure_skip_verify"`
}

// NetBox is a netbox source's settings.
type NetBox struct {
	// ExcludeVirtualMachines leaves virtual machines out.
	ExcludeVirtualMachines bool `json:"exclude_virtual_machines,omitempty"`
	// StatusAvailability overrides what a status means for availability:
	// Available, Unavailable, Unknown or Retract, by status value.
	StatusAvailability map[string]string `json:"status_availability,omitempty"`
}

// Sync is the bundle of a sync worker; sources are keyed "<namespace>/<name>".
type Sync struct {
	AgentID    string            `json:"agent_id"`
	Scope      string            `json:"scope"`
	TenantID   string            `json:"tenant_id"`
	TenantSlug string            `json:"tenant_slug"`
	Sources    map[string]Source `json:"sources"`
}

// ScopeAgent is the scope of an agent's configuration.
const ScopeAgent = "agent"

// Agent is the config_json of an agent. Its sweep travels twice: typed in
// the response's sweep field (10), and here in the group form that
// ServiceRadar's own agents read.
type Agent struct {
	AgentID    string `json:"agent_id"`
	Scope      string `json:"scope"`
	TenantID   string `json:"tenant_id"`
	TenantSlug string `json:"tenant_slug"`
	Partition  string `json:"partition"`
	// Sweep is always present: upstream agents apply nothing without a
	// "sweep" key, and clear their targets on an empty groups list.
	Sweep AgentSweep `json:"sweep"`
}

// AgentSweep is config_json.sweep in upstream's group form.
type AgentSweep struct {
	// ConfigHash changes exactly when Groups change (a hash of their
	// canonical JSON); agents skip re-applying an unchanged hash.
	ConfigHash string `json:"config_hash"`
	// Groups has one group per sweep-enabled source; never null.
	Groups []SweepGroup `json:"groups"`
}

// SweepGroup is one source's sweep: what, how and how often.
type SweepGroup struct {
	// ID and SweepGroupID are the source's uid; agents tag their sweep
	// results with SweepGroupID.
	ID           string `json:"id"`
	SweepGroupID string `json:"sweep_group_id"`
	// Targets are CIDRs: the source's explicit networks and one host
	// network (/32, or /128 for IPv6) per device.
	Targets []string `json:"targets"`
	// Ports are the TCP ports probed in tcp mode.
	Ports []int32 `json:"ports"`
	// Modes are the probe modes ("icmp", "tcp").
	Modes    []string      `json:"modes"`
	Schedule SweepSchedule `json:"schedule"`
	Settings SweepSettings `json:"settings"`
	// DeviceTargets are the source's devices, one host network each.
	DeviceTargets []SweepDeviceTarget `json:"device_targets"`
}

// SweepSchedule says when a group runs.
type SweepSchedule struct {
	// Type is "interval" (the only one this gateway sends) or "cron".
	Type string `json:"type"`
	// Interval is a Go duration string such as "5m"; empty leaves the
	// agent's default.
	Interval string `json:"interval"`
	// Cron is a cron expression, for Type "cron".
	Cron string `json:"cron"`
}

// SweepSettings tune a group's probes; zero values leave the agent's defaults.
type SweepSettings struct {
	Concurrency int    `json:"concurrency"`
	Timeout     string `json:"timeout"`
}

// SweepDeviceTarget is one device to sweep.
type SweepDeviceTarget struct {
	// Network is the device's host network ("10.1.2.3/32").
	Network string `json:"network"`
	// SweepModes are the modes for this device.
	SweepModes []string `json:"sweep_modes,omitempty"`
	// QueryLabel is the label of the query that found the device, if known.
	QueryLabel string `json:"query_label,omitempty"`
	// Source is the integration type that reported it ("armis", "netbox").
	Source string `json:"source,omitempty"`
	// Metadata carries the device's hostname and integration_source_uid.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Encode returns the canonical JSON of v (object keys sorted at every level,
// no insignificant space) and its version: a hash of exactly those bytes.
func Encode(v any) ([]byte, string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, "", fmt.Errorf("encoding bundle: %w", err)
	}
	// Numbers stay json.Number (their exact text): through float64 an int64
	// above 2^53, a Faker seed say, would change.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, "", fmt.Errorf("encoding bundle: %w", err)
	}
	// encoding/json writes map keys in sorted order, so a round trip through
	// generic maps sorts the keys of every object, struct fields included.
	canonical, err := json.Marshal(generic)
	if err != nil {
		return nil, "", fmt.Errorf("encoding bundle: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return canonical, hex.EncodeToString(sum[:16]), nil
}

// Redacted is a copy of the bundle whose credentials are replaced by their
// key names, for logs and debugging output.
func (s Sync) Redacted() Sync {
	out := s
	out.Sources = make(map[string]Source, len(s.Sources))
	for k, src := range s.Sources {
		if len(src.Credentials) > 0 {
			red := make(map[string]string, len(src.Credentials))
			for key := range src.Credentials {
				red[key] = "[redacted]"
			}
			src.Credentials = red
		}
		out.Sources[k] = src
	}
	return out
}
