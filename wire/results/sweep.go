package results

import (
	"bytes"
	"errors"
	"fmt"

	json "github.com/goccy/go-json"
)

// SweepServiceType is the service_type of an agent's sweep results.
const SweepServiceType = "sweep"

// SweepHost is one host of an agent's sweep results. UPSTREAM.md does not
// state the JSON of upstream's sweep results, so the gateway accepts this
// documented shape: each host names its address as "host" or "ip" and says
// whether it answered in "available"; port results ("port_results" or
// "ports", upstream's earlier sweep summary carried the former) are read
// only to learn whether any port answered.
type SweepHost struct {
	Host      string          `json:"host,omitempty"`
	IP        string          `json:"ip,omitempty"`
	Available bool            `json:"available"`
	Ports     json.RawMessage `json:"ports,omitempty"`
	// PortResults are upstream's per-port results.
	PortResults []SweepPort `json:"port_results,omitempty"`
}

// SweepPort is one port's result.
type SweepPort struct {
	Port      int  `json:"port"`
	Available bool `json:"available"`
}

// Address is the host's address: ip, or else host.
func (h SweepHost) Address() string {
	if h.IP != "" {
		return h.IP
	}
	return h.Host
}

// Up reports whether the host answered: its available flag, or any port
// result that says it answered.
func (h SweepHost) Up() bool {
	if h.Available {
		return true
	}
	for _, p := range h.PortResults {
		if p.Available {
			return true
		}
	}
	var ports []SweepPort
	if len(h.Ports) > 0 && json.Unmarshal(h.Ports, &ports) == nil {
		for _, p := range ports {
			if p.Available {
				return true
			}
		}
	}
	return false
}

// sweepSummary is the object form: upstream's sweep summary with its hosts.
type sweepSummary struct {
	Hosts []SweepHost `json:"hosts"`
}

// ParseSweep reads sweep results, after Scan has bounded them: a JSON array
// of hosts, or an object whose "hosts" member is one (other members, such
// as a summary's network and counts, are ignored).
func ParseSweep(raw []byte) ([]SweepHost, error) {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("sweep results are empty")
	}
	switch trimmed[0] {
	case '[':
		var hosts []SweepHost
		if err := json.Unmarshal(raw, &hosts); err != nil {
			return nil, fmt.Errorf("sweep results array: %w", err)
		}
		return hosts, nil
	case '{':
		var s sweepSummary
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("sweep results object: %w", err)
		}
		return s.Hosts, nil
	}
	return nil, errors.New("sweep results are neither a JSON array nor an object")
}
