// Package bootstrap holds the minimal worker configuration (DESIGN.md
// section 6): the file a sync worker starts from, which says where the
// gateway is, who the worker is and where its certificate comes from;
// everything else comes from the gateway. The manager renders it (into a
// worker's ConfigMap, or an edge onboarding bundle) and the worker loads it
// with Load: both sides use these types, so the two cannot drift apart. It
// depends on nothing of the project.
package bootstrap

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// Where worker pods find the bootstrap file: the manager mounts it there and
// it is the worker's default --config.
const (
	// Dir is the directory the bootstrap file is mounted in.
	Dir = "/etc/serviceradar"
	// FileName is the bootstrap file's name (and its ConfigMap key).
	FileName = "bootstrap.json"
	// Path is the bootstrap file's path in a worker pod.
	Path = Dir + "/" + FileName
)

// IdentitySource says where a worker loads its certificate from.
type IdentitySource string

const (
	// IdentityWorkloadAPI loads an SVID from the SPIFFE Workload API.
	IdentityWorkloadAPI IdentitySource = "workload-api"
	// IdentityFiles loads PEM files (operator-issued SVID or edge certificate).
	IdentityFiles IdentitySource = "files"
)

// Config is the minimal worker configuration: everything else comes from
// the gateway.
type Config struct {
	// GatewayAddress is host:port of the agent-gateway.
	GatewayAddress string `json:"gateway_address"`
	// ComponentID is the worker's component id, as in its certificate.
	ComponentID string `json:"component_id"`
	// Partition is the worker's partition.
	Partition string `json:"partition"`
	// TenantSlug is the tenant the worker serves (informational: the gateway
	// trusts only the certificate).
	TenantSlug string `json:"tenant_slug"`
	// Identity says where the certificate comes from.
	Identity Identity `json:"identity"`
	// MetricsAddress is where the worker serves Prometheus metrics (empty: the worker's flag).
	MetricsAddress string `json:"metrics_address,omitempty"`
}

// Identity is the identity part of a Config.
type Identity struct {
	// Source says where the certificate comes from.
	Source IdentitySource `json:"source"`
	// WorkloadAPISocket is the Workload API address, with IdentityWorkloadAPI.
	WorkloadAPISocket string `json:"workload_api_socket,omitempty"`
	// SPIFFEID picks the SVID with this ID when the Workload API offers several.
	SPIFFEID string `json:"spiffe_id,omitempty"`
	// CertFile, KeyFile and CAFile are the PEM files, with IdentityFiles;
	// relative paths are taken from the bootstrap file's directory.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	CAFile   string `json:"ca_file,omitempty"`
	// ExpectedGatewayID is the SPIFFE ID the gateway must present (empty: any gateway of the trust domain).
	ExpectedGatewayID string `json:"expected_gateway_id,omitempty"`
	// ServerName is checked against a gateway certificate without SPIFFE ID.
	ServerName string `json:"server_name,omitempty"`
}

// JSON encodes the bootstrap with sorted keys and a trailing newline.
func (c Config) JSON() ([]byte, error) {
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding worker bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}

// FileIdentity is the bootstrap identity of a worker with mounted PEM files.
func FileIdentity(dir string) Identity {
	return Identity{Source: IdentityFiles, CertFile: dir + "/tls.crt", KeyFile: dir + "/tls.key", CAFile: dir + "/ca.crt"}
}

// Load reads and checks a bootstrap file. Relative identity file paths are
// taken from the bootstrap's own directory, not the working directory: an
// onboarding bundle (config.json naming ./tls.crt, ./tls.key and ./ca.crt)
// runs as `worker --config <dir>/config.json` from anywhere.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the operator-given bootstrap path
	if err != nil {
		return Config{}, fmt.Errorf("reading bootstrap: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return c, fmt.Errorf("bootstrap %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, f := range []*string{&c.Identity.CertFile, &c.Identity.KeyFile, &c.Identity.CAFile} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
	return c, nil
}

// Parse parses and checks a bootstrap; errors name the field. An empty
// partition is "default".
func Parse(data []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("decoding: %w", err)
	}
	id := c.Identity
	switch {
	case c.GatewayAddress == "":
		return c, errors.New("gateway_address is required")
	case c.ComponentID == "":
		return c, errors.New("component_id is required")
	case id.Source != IdentityFiles && id.Source != IdentityWorkloadAPI:
		return c, fmt.Errorf("identity.source must be %q or %q", IdentityFiles, IdentityWorkloadAPI)
	case id.Source == IdentityFiles && (id.CertFile == "" || id.KeyFile == "" || id.CAFile == ""):
		return c, fmt.Errorf("identity.cert_file, identity.key_file and identity.ca_file are required with identity.source %q", IdentityFiles)
	}
	if _, _, err := net.SplitHostPort(c.GatewayAddress); err != nil {
		return c, fmt.Errorf("gateway_address %q must be host:port: %w", c.GatewayAddress, err)
	}
	if c.Partition == "" {
		c.Partition = "default"
	}
	return c, nil
}
