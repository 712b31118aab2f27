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
}

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
}

// Message is one results message.
type Message struct {
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

// Encode is the object form of a message.
func Encode(m Message) ([]byte, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding results: %w", err)
	}
	return raw, nil
}
