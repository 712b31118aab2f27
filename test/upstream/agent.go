// Package upstream is a client that behaves toward the agent-gateway as
// ServiceRadar's own agents do, written from the facts in
// ../shared/UPSTREAM.md (not from their code): a keepalive ping every 30 s
// (10 s timeout) also with no call open, a dropped connection and a new one
// after any failed call, a ControlStream retried every 5 s, sweep work read
// from config_json's "sweep" key in its group form; and the sync side (a
// whole run in one StreamStatus call of plain JSON arrays of about 3 MiB,
// with per-device sync_meta, or the old sync service's form), PushStatus
// with the runtime fields, and sweep results. The interoperability tests run
// it against the gateway binary.
package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	pb "github.com/serviceradar/sync-operator/proto"
)

// Upstream's connection behaviour (UPSTREAM.md, "Connection behaviour").
const (
	// KeepaliveTime is how often upstream clients ping, with or without a call.
	KeepaliveTime = 30 * time.Second
	// KeepaliveTimeout is how long they wait for the ping's acknowledgement.
	KeepaliveTimeout = 10 * time.Second
	// ControlStreamRetry is the delay of their ControlStream loop after a failure.
	ControlStreamRetry = 5 * time.Second
)

// Config configures an agent.
type Config struct {
	// Target is the gateway's address; TLS the agent's mTLS configuration.
	Target string
	TLS    *tls.Config
	// AgentID, Partition and the runtime fields are what the agent says
	// about itself in Hello and on the ControlStream.
	AgentID, Partition, Version, Hostname, OS, Arch string
	// ControlStreamRetry is the ControlStream loop's delay (default
	// ControlStreamRetry; tests shorten it).
	ControlStreamRetry time.Duration
	// Log receives connection events.
	Log logr.Logger
}

// Agent is an upstream-style agent. It is safe for concurrent use.
type Agent struct {
	cfg Config

	mu    sync.Mutex
	conn  *grpc.ClientConn
	dials int
	// control counts ControlStream attempts; open says whether one is open.
	control int
	open    bool
}

// New returns an agent; it connects on its first call.
func New(cfg Config) *Agent {
	if cfg.ControlStreamRetry <= 0 {
		cfg.ControlStreamRetry = ControlStreamRetry
	}
	return &Agent{cfg: cfg}
}

// DialOptions are the options upstream agents dial with: mTLS and their keepalive.
func DialOptions(tlsConfig *tls.Config) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout, PermitWithoutStream: true}),
	}
}

// client returns the connection's client, dialing a new connection when the
// last one was dropped.
func (a *Agent) client() (pb.AgentGatewayServiceClient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		conn, err := grpc.NewClient(a.cfg.Target, DialOptions(a.cfg.TLS)...)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", a.cfg.Target, err)
		}
		a.conn = conn
		a.dials++
	}
	return pb.NewAgentGatewayServiceClient(a.conn), nil
}

// drop closes the connection after a failed call, as upstream agents do:
// the next call dials again.
func (a *Agent) drop(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		_ = a.conn.Close()
		a.conn = nil
		a.cfg.Log.Info("call failed; dropping the connection", "error", err.Error())
	}
}

// call runs one call on the current connection and drops it on failure.
func call[T any](a *Agent, f func(pb.AgentGatewayServiceClient) (T, error)) (T, error) {
	c, err := a.client()
	if err != nil {
		var zero T
		return zero, err
	}
	out, err := f(c)
	if err != nil {
		a.drop(err)
	}
	return out, err
}

// Dials is how many connections the agent has opened.
func (a *Agent) Dials() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dials
}

// Close closes the connection.
func (a *Agent) Close() {
	a.drop(errors.New("closed"))
}

// Hello announces the agent.
func (a *Agent) Hello(ctx context.Context, configVersion string) (*pb.AgentHelloResponse, error) {
	return call(a, func(c pb.AgentGatewayServiceClient) (*pb.AgentHelloResponse, error) {
		return c.Hello(ctx, &pb.AgentHelloRequest{AgentId: a.cfg.AgentID, Version: a.cfg.Version, Hostname: a.cfg.Hostname,
			Os: a.cfg.OS, Arch: a.cfg.Arch, Partition: a.cfg.Partition, ConfigVersion: configVersion})
	})
}

// GetConfig fetches the configuration with the version the agent has; it
// asks as agentID ("" is the agent's own id).
func (a *Agent) GetConfig(ctx context.Context, agentID, configVersion string) (*pb.AgentConfigResponse, error) {
	if agentID == "" {
		agentID = a.cfg.AgentID
	}
	return call(a, func(c pb.AgentGatewayServiceClient) (*pb.AgentConfigResponse, error) {
		return c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: agentID, ConfigVersion: configVersion})
	})
}

// ControlStats are the ControlStream attempts so far and whether one is open.
func (a *Agent) ControlStats() (attempts int, open bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.control, a.open
}

// RunControlStream is upstream's ControlStream loop until ctx ends: open
// the stream, say hello, hand every pushed config to onConfig (and
// acknowledge it), answer every command with an ack and a result saying
// the type is not performed here; after any failure wait
// ControlStreamRetry and start over.
func (a *Agent) RunControlStream(ctx context.Context, onConfig func(*pb.AgentConfigResponse)) {
	for ctx.Err() == nil {
		err := a.controlOnce(ctx, onConfig)
		if ctx.Err() != nil {
			return
		}
		a.cfg.Log.Info("control stream failed; retrying", "error", fmt.Sprint(err), "in", a.cfg.ControlStreamRetry.String())
		t := time.NewTimer(a.cfg.ControlStreamRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (a *Agent) controlOnce(ctx context.Context, onConfig func(*pb.AgentConfigResponse)) error {
	a.mu.Lock()
	a.control++
	a.mu.Unlock()
	c, err := a.client()
	if err != nil {
		return err
	}
	st, err := c.ControlStream(ctx)
	if err != nil {
		a.drop(err)
		return fmt.Errorf("opening the control stream: %w", err)
	}
	if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{
		AgentId: a.cfg.AgentID, Partition: a.cfg.Partition, Version: a.cfg.Version, Hostname: a.cfg.Hostname, Os: a.cfg.OS, Arch: a.cfg.Arch,
	}}}); err != nil {
		return fmt.Errorf("sending the stream hello: %w", err)
	}
	defer func() {
		a.mu.Lock()
		a.open = false
		a.mu.Unlock()
	}()
	for {
		msg, err := st.Recv()
		if err != nil {
			return fmt.Errorf("receiving on the control stream: %w", err)
		}
		a.mu.Lock()
		a.open = true
		a.mu.Unlock()
		switch {
		case msg.GetConfig() != nil:
			onConfig(msg.GetConfig())
			if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{
				ConfigVersion: msg.GetConfig().GetConfigVersion(), Timestamp: time.Now().Unix()}}}); err != nil {
				return fmt.Errorf("acknowledging config: %w", err)
			}
		case msg.GetCommand() != nil:
			cmd := msg.GetCommand()
			now := time.Now().Unix()
			for _, req := range []*pb.ControlStreamRequest{
				{Payload: &pb.ControlStreamRequest_CommandAck{CommandAck: &pb.CommandAck{CommandId: cmd.GetCommandId(), CommandType: cmd.GetCommandType(), Timestamp: now}}},
				{Payload: &pb.ControlStreamRequest_CommandResult{CommandResult: &pb.CommandResult{CommandId: cmd.GetCommandId(), CommandType: cmd.GetCommandType(),
					Message: "unsupported command type " + cmd.GetCommandType(), Timestamp: now}}},
			} {
				if err := st.Send(req); err != nil {
					return fmt.Errorf("answering command %s: %w", cmd.GetCommandId(), err)
				}
			}
		}
	}
}

// Sweep is the sweep work an upstream agent reads from config_json.
type Sweep struct {
	// ConfigHash is the sweep's hash; agents skip an unchanged one.
	ConfigHash string
	// Groups are the sweep groups; none clears the agent's sweep.
	Groups []SweepGroup
}

// SweepGroup is one group as the agent applies it.
type SweepGroup struct {
	ID, SweepGroupID string
	// Networks are the group's targets as CIDRs (a bare IP becomes a /32 or /128).
	Networks []string
	Ports    []int
	Modes    []string
	// ScheduleType is "interval" or "cron"; Interval is parsed from the schedule.
	ScheduleType  string
	Interval      time.Duration
	Concurrency   int
	Timeout       time.Duration
	DeviceTargets []DeviceTarget
}

// DeviceTarget is one device the agent sweeps.
type DeviceTarget struct {
	Network, QueryLabel, Source string
	Modes                       []string
	Metadata                    map[string]string
}

// wire forms of config_json.sweep.
type (
	wireConfig struct {
		Sweep json.RawMessage `json:"sweep"`
	}
	wireSweep struct {
		ConfigHash string      `json:"config_hash"`
		Groups     []wireGroup `json:"groups"`
	}
	wireGroup struct {
		ID           string   `json:"id"`
		SweepGroupID string   `json:"sweep_group_id"`
		Targets      []string `json:"targets"`
		Ports        []int    `json:"ports"`
		Modes        []string `json:"modes"`
		Schedule     struct {
			Type     string `json:"type"`
			Interval string `json:"interval"`
			Cron     string `json:"cron"`
		} `json:"schedule"`
		Settings struct {
			Concurrency int    `json:"concurrency"`
			Timeout     string `json:"timeout"`
		} `json:"settings"`
		DeviceTargets []struct {
			Network    string            `json:"network"`
			SweepModes []string          `json:"sweep_modes"`
			QueryLabel string            `json:"query_label"`
			Source     string            `json:"source"`
			Metadata   map[string]string `json:"metadata"`
		} `json:"device_targets"`
	}
)

// ParseSweep reads config_json as upstream agents do: nil without a
// "sweep" key (nothing is applied), no groups to clear the sweep. Invalid
// targets, unknown modes and unparsable durations are left out, not fatal.
func ParseSweep(configJSON []byte) (*Sweep, error) {
	if len(configJSON) == 0 {
		return nil, nil
	}
	var c wireConfig
	if err := json.Unmarshal(configJSON, &c); err != nil {
		return nil, fmt.Errorf("decoding config_json: %w", err)
	}
	if len(c.Sweep) == 0 || string(c.Sweep) == "null" {
		return nil, nil
	}
	var w wireSweep
	if err := json.Unmarshal(c.Sweep, &w); err != nil {
		return nil, fmt.Errorf("decoding config_json.sweep: %w", err)
	}
	out := &Sweep{ConfigHash: w.ConfigHash}
	for _, g := range w.Groups {
		sg := SweepGroup{ID: g.ID, SweepGroupID: g.SweepGroupID, Ports: g.Ports, Modes: modes(g.Modes),
			ScheduleType: strings.ToLower(strings.TrimSpace(g.Schedule.Type)), Concurrency: g.Settings.Concurrency}
		if sg.SweepGroupID == "" {
			sg.SweepGroupID = g.ID
		}
		for _, t := range g.Targets {
			if n, ok := network(t); ok {
				sg.Networks = append(sg.Networks, n)
			}
		}
		if sg.ScheduleType == "" || sg.ScheduleType == "interval" {
			sg.Interval, _ = time.ParseDuration(strings.TrimSpace(g.Schedule.Interval))
		}
		sg.Timeout, _ = time.ParseDuration(strings.TrimSpace(g.Settings.Timeout))
		for _, d := range g.DeviceTargets {
			if n, ok := network(d.Network); ok {
				sg.DeviceTargets = append(sg.DeviceTargets, DeviceTarget{Network: n, QueryLabel: d.QueryLabel, Source: d.Source,
					Modes: modes(d.SweepModes), Metadata: d.Metadata})
			}
		}
		out.Groups = append(out.Groups, sg)
	}
	return out, nil
}

// network normalizes a target: a CIDR as it is, a bare IP as its host network.
func network(t string) (string, bool) {
	t = strings.TrimSpace(t)
	if strings.Contains(t, "/") {
		if _, _, err := net.ParseCIDR(t); err != nil {
			return "", false
		}
		return t, true
	}
	ip := net.ParseIP(t)
	if ip == nil {
		return "", false
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String() + "/32", true
	}
	return ip.String() + "/128", true
}

// modes keeps the sweep modes upstream agents know.
func modes(in []string) []string {
	var out []string
	for _, m := range in {
		switch m = strings.ToLower(strings.TrimSpace(m)); m {
		case "icmp", "tcp", "tcp_connect", "mtr":
			out = append(out, m)
		}
	}
	return out
}
