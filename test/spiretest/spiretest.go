// Package spiretest runs a real SPIRE server and agent (v1.13.3, built from Go
// modules by hack/spire-assets.sh) on loopback and unix sockets for tests:
// sqlite datastore, join-token node attestation, the unix workload attestor
// and 1 s sync intervals, so SVIDs are served about 2 s after start.
package spiretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/serviceradar/sync-operator/identity/mtls"
	"github.com/serviceradar/sync-operator/test"
)

// Environment variables naming the binaries; when unset they are built.
const (
	EnvServer = "SPIRE_SERVER_BIN"
	EnvAgent  = "SPIRE_AGENT_BIN"
)

// SPIRE is a running SPIRE server and agent.
type SPIRE struct {
	// TrustDomain is the trust domain of the server.
	TrustDomain spiffeid.TrustDomain
	// WorkloadAPIAddr is the agent's Workload API address (unix://...).
	WorkloadAPIAddr string
	// AgentID is the agent's SPIFFE ID, the parent of workload entries.
	AgentID spiffeid.ID

	dir, serverBin, agentBin, serverSocket string
	procs                                  []*exec.Cmd
	logs                                   []*bytes.Buffer
	mu                                     sync.Mutex
}

func binaries() (server, agent string, err error) {
	server, agent = os.Getenv(EnvServer), os.Getenv(EnvAgent)
	if server != "" && agent != "" {
		return server, agent, nil
	}
	script := filepath.Join(test.RepoRoot(), "hack", "spire-assets.sh")
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("building SPIRE with %s: %w", script, err)
	}
	dir := strings.TrimSpace(string(out))
	return filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent"), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs a server and an agent attested with a join token, for the trust
// domain td, and returns when the agent serves the Workload API.
func Start(ctx context.Context, td string) (*SPIRE, error) {
	serverBin, agentBin, err := binaries()
	if err != nil {
		return nil, err
	}
	// Unix socket paths must stay under 108 bytes: keep the folder short.
	dir, err := os.MkdirTemp("/tmp", "spire")
	if err != nil {
		return nil, fmt.Errorf("creating SPIRE folder: %w", err)
	}
	s := &SPIRE{
		TrustDomain: spiffeid.RequireTrustDomainFromString(td),
		dir:         dir, serverBin: serverBin, agentBin: agentBin,
		serverSocket:    filepath.Join(dir, "s.sock"),
		WorkloadAPIAddr: "unix://" + filepath.Join(dir, "a.sock"),
	}
	if err := s.start(ctx); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	return s, nil
}

func (s *SPIRE) start(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	serverConf := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "WARN"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  experimental { cache_reload_interval = "1s" }
}
plugins {
  DataStore "sql" { plugin_data { database_type = "sqlite3"  connection_string = %q } }
  KeyManager "memory" { plugin_data {} }
  NodeAttestor "join_token" { plugin_data {} }
}
`, port, s.serverSocket, s.TrustDomain.Name(), filepath.Join(s.dir, "server"), filepath.Join(s.dir, "server", "datastore.sqlite3"))
	if err := os.WriteFile(filepath.Join(s.dir, "server.conf"), []byte(serverConf), 0o600); err != nil {
		return fmt.Errorf("writing server config: %w", err)
	}
	s.spawn(s.serverBin, "run", "-config", filepath.Join(s.dir, "server.conf"))
	if err := s.waitFor(ctx, func() error {
		_, err := s.serverCLI(ctx, "healthcheck")
		return err
	}); err != nil {
		return fmt.Errorf("spire-server did not become healthy: %w", err)
	}
	out, err := s.serverCLI(ctx, "token", "generate", "-ttl", "600")
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`Token: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("no join token in %q", out)
	}
	s.AgentID, err = spiffeid.FromSegments(s.TrustDomain, "spire", "agent", "join_token", m[1])
	if err != nil {
		return fmt.Errorf("agent ID: %w", err)
	}
	agentConf := fmt.Sprintf(`agent {
  data_dir = %q
  log_level = "WARN"
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = %q
  trust_domain = %q
  insecure_bootstrap = true
  join_token = %q
  experimental { sync_interval = "1s" }
}
plugins {
  NodeAttestor "join_token" { plugin_data {} }
  KeyManager "memory" { plugin_data {} }
  WorkloadAttestor "unix" { plugin_data {} }
}
`, filepath.Join(s.dir, "agent"), port, strings.TrimPrefix(s.WorkloadAPIAddr, "unix://"), s.TrustDomain.Name(), m[1])
	if err := os.WriteFile(filepath.Join(s.dir, "agent.conf"), []byte(agentConf), 0o600); err != nil {
		return fmt.Errorf("writing agent config: %w", err)
	}
	s.spawn(s.agentBin, "run", "-config", filepath.Join(s.dir, "agent.conf"))
	if err := s.waitFor(ctx, func() error {
		return exec.CommandContext(ctx, s.agentBin, "healthcheck", "-socketPath", strings.TrimPrefix(s.WorkloadAPIAddr, "unix://")).Run()
	}); err != nil {
		return fmt.Errorf("spire-agent did not become healthy: %w", err)
	}
	return nil
}

func (s *SPIRE) spawn(bin string, args ...string) {
	cmd := exec.Command(bin, args...)
	buf := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		buf.WriteString(err.Error())
	}
	s.mu.Lock()
	s.procs, s.logs = append(s.procs, cmd), append(s.logs, buf)
	s.mu.Unlock()
}

func (s *SPIRE) waitFor(ctx context.Context, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var err error
	for {
		if err = check(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w); logs:\n%s", ctx.Err(), err, s.Logs())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *SPIRE) serverCLI(ctx context.Context, args ...string) (string, error) {
	args = append(args, "-socketPath", s.serverSocket)
	out, err := exec.CommandContext(ctx, s.serverBin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("spire-server %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Logs returns what the server and agent printed.
func (s *SPIRE) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.logs {
		b.WriteString(l.String())
	}
	return b.String()
}

// RegisterWorkload registers an entry giving this process's uid the SPIFFE ID
// id, with the given X.509-SVID lifetime (0 means the server default).
func (s *SPIRE) RegisterWorkload(ctx context.Context, id spiffeid.ID, ttl time.Duration) error {
	args := []string{"entry", "create", "-parentID", s.AgentID.String(), "-spiffeID", id.String(),
		"-selector", "unix:uid:" + strconv.Itoa(os.Getuid())}
	if ttl > 0 {
		args = append(args, "-x509SVIDTTL", strconv.Itoa(int(ttl.Seconds())))
	}
	_, err := s.serverCLI(ctx, args...)
	return err
}

// Source opens a Workload API X509Source that uses the SVID id (several
// entries match this process) and waits until the agent serves it.
func (s *SPIRE) Source(ctx context.Context, id spiffeid.ID) (*workloadapi.X509Source, error) {
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(workloadapi.WithAddr(s.WorkloadAPIAddr)), mtls.PickSVID(id))
	if err != nil {
		return nil, fmt.Errorf("opening Workload API source: %w", err)
	}
	if err := s.waitFor(ctx, func() error {
		svid, err := src.GetX509SVID()
		if err != nil {
			return fmt.Errorf("getting SVID: %w", err)
		}
		if svid.ID != id {
			return fmt.Errorf("SVID %s is not yet served (have %s)", id, svid.ID)
		}
		return nil
	}); err != nil {
		return nil, errors.Join(err, src.Close())
	}
	return src, nil
}

// Stop ends the agent and server and removes their data.
func (s *SPIRE) Stop() error {
	s.mu.Lock()
	procs := s.procs
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if p.Process == nil {
			continue
		}
		_ = p.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("removing SPIRE folder: %w", err)
	}
	return nil
}
