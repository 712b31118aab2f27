// Package results holds the JSON a sync worker sends as the message of a
// StreamStatus service (DESIGN.md section 6): either an object with
// sync_meta and devices, or the upstream plain array of device updates.
// Workers encode it and the gateway parses it; both sides use these types.
package results

import (
	"bytes"
	"errors"
	"fmt"

	json "github.com/goccy/go-json"
)

// Service fields of a results chunk.
const (
	ServiceName = "sync"
	ServiceType = "sync"
	Source      = "results"
)

// Meta describes the segment a message belongs to.
type Meta struct {
	SyncServiceID        string `json:"sync_service_id"`
	IntegrationSourceUID string `json:"integration_source_uid"`
	SyncRunID            string `json:"sync_run_id"`
	Segment              int    `json:"segment"`
	RunComplete          bool   `json:"run_complete"`
	FullFetch            bool   `json:"full_fetch"`
	TotalDevices         int    `json:"total_devices"`
	// Error is the run's error, reported with run_complete when the fetch failed.
	Error string `json:"error,omitempty"`
	// Mode is how the run fetches: ModeFull or ModeIncremental (absent from
	// upstream clients).
	Mode string `json:"mode,omitempty"`
	// DryRun is set on every segment of a run the worker made for a source
	// in dry-run mode (bundle Source.DryRun): the gateway evaluates the run
	// and rolls it back. The gateway also treats a run as dry when the
	// source is in dry-run mode as it sees it.
	DryRun bool `json:"dry_run,omitempty"`
}

// Modes of a run (Meta.Mode).
const (
	// ModeFull fetches the whole inventory.
	ModeFull = "full"
	// ModeIncremental fetches only what changed since the last good run.
	ModeIncremental = "incremental"
)

// DeviceUpdate is one device as a source reported it. IsAvailable is nil
// when the source does not speak about availability.
type DeviceUpdate struct {
	DeviceID    string            `json:"device_id,omitempty"`
	IP          string            `json:"ip,omitempty"`
	MAC         string            `json:"mac,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	Source      string            `json:"source,omitempty"`
	Partition   string            `json:"partition,omitempty"`
	Timestamp   string            `json:"timestamp,omitempty"`
	IsAvailable *bool             `json:"is_available,omitempty"`
	Confidence  int               `json:"confidence,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// TenantID and TenantSlug are never trusted; a value that contradicts
	// the caller's certificate refuses the call.
	TenantID   string `json:"tenant_id,omitempty"`
	TenantSlug string `json:"tenant_slug,omitempty"`
	// AgentID, GatewayID, ServiceType and ServiceID are what upstream
	// clients add to every device (UPSTREAM.md); the caller's certificate,
	// not these, says who sent it, so the gateway reads them and stores none.
	AgentID     string `json:"agent_id,omitempty"`
	GatewayID   string `json:"gateway_id,omitempty"`
	ServiceType string `json:"service_type,omitempty"`
	ServiceID   string `json:"service_id,omitempty"`
	// SyncMeta is the run an upstream agent's sync runtime puts on every
	// device of the array form; nil in our object form, whose run is the
	// message's Meta, and from the old stand-alone sync service.
	SyncMeta *DeviceMeta `json:"sync_meta,omitempty"`
}

// DeviceMeta is the per-device sync_meta of upstream's array form: the run
// the device belongs to and where in it. The gateway runs it like one of
// our own runs: it completes with the device that says is_final.
type DeviceMeta struct {
	SyncServiceID string `json:"sync_service_id,omitempty"`
	SyncRunID     string `json:"sync_run_id,omitempty"`
	ChunkIndex    int    `json:"chunk_index"`
	TotalChunks   int    `json:"total_chunks"`
	TotalDevices  int    `json:"total_devices"`
	IsFinal       bool   `json:"is_final"`
}

// Message is one results message.
type Message struct {
	// Array is set for the upstream array form.
	Array bool `json:"-"`
	// Meta is nil for the upstream array form.
	Meta    *Meta          `json:"sync_meta,omitempty"`
	Devices []DeviceUpdate `json:"devices"`
}

// ErrEmpty is returned for an empty message.
var ErrEmpty = errors.New("results message is empty")

// Parse reads either form, after Scan has checked the message's bounds.
func Parse(raw []byte) (Message, error) {
	if _, err := Scan(bytes.TrimLeft(raw, " \t\r\n")); err != nil {
		return Message{}, err
	}
	return ParseScanned(raw)
}

// ParseScanned reads either form of a message that Scan has already
// accepted (the gateway scans every results message before it charges its
// ingest budget for it, and so does not scan it twice).
func ParseScanned(raw []byte) (Message, error) {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 {
		return Message{}, ErrEmpty
	}
	var m Message
	switch trimmed[0] {
	case '[':
		if err := json.Unmarshal(raw, &m.Devices); err != nil {
			return Message{}, fmt.Errorf("results array: %w", err)
		}
		m.Array = true
	case '{':
		if err := json.Unmarshal(raw, &m); err != nil {
			return Message{}, fmt.Errorf("results object: %w", err)
		}
		if m.Meta == nil {
			return Message{}, errors.New("results object lacks sync_meta")
		}
	default:
		return Message{}, errors.New("results message is neither a JSON object nor an array")
	}
	return m, nil
}

// IsArray reports whether a message is in the upstream array form, by its
// first byte, without decoding it.
func IsArray(raw []byte) bool {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '['
}

// Encode is the object form of a message.
func Encode(m Message) ([]byte, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding results: %w", err)
	}
	return raw, nil
}
