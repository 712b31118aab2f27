// Package commands holds the commands the gateway sends to sync workers on
// their ControlStream (CommandRequest): each command's type name and JSON
// payload. The gateway encodes them and workers decode them; both sides use
// these types, so the two cannot drift apart.
package commands

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/serviceradar/sync-operator/wire/results"
)

// RunNowType is the command type asking a worker for an immediate run of
// one of its sources ("sync now").
const RunNowType = "sync.run_now"

// Modes of a RunNow: those of a run (results.Meta.Mode).
const (
	// ModeFull fetches the whole inventory (and may retract).
	ModeFull = results.ModeFull
	// ModeIncremental fetches only what changed since the last good run.
	ModeIncremental = results.ModeIncremental
)

// RunNow is the payload of a RunNowType command.
type RunNow struct {
	// IntegrationSourceUID names the source (its IntegrationSource's UID, as
	// in the worker's bundle).
	IntegrationSourceUID string `json:"integration_source_uid"`
	// Mode is ModeFull or ModeIncremental.
	Mode string `json:"mode"`
	// RequestedAt is the time the request carries (the annotation's value):
	// a worker runs once per value, so a request delivered twice (by two
	// gateway replicas, or again after a reconnection) runs once.
	RequestedAt time.Time `json:"requested_at"`
}

// Encode is the command's JSON payload.
func (r RunNow) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	out, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", RunNowType, err)
	}
	return out, nil
}

// Validate checks the fields; errors name the field.
func (r RunNow) Validate() error {
	switch {
	case r.IntegrationSourceUID == "":
		return errors.New("integration_source_uid is required")
	case r.Mode != ModeFull && r.Mode != ModeIncremental:
		return fmt.Errorf("mode must be %q or %q", ModeFull, ModeIncremental)
	case r.RequestedAt.IsZero():
		return errors.New("requested_at is required")
	}
	return nil
}

// DecodeRunNow parses and checks a RunNowType payload.
func DecodeRunNow(payload []byte) (RunNow, error) {
	var r RunNow
	if err := json.Unmarshal(payload, &r); err != nil {
		return r, fmt.Errorf("decoding the %s payload: %w", RunNowType, err)
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("the %s payload: %w", RunNowType, err)
	}
	return r, nil
}
