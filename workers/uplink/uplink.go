// Package uplink is a sync worker's connection to the agent-gateway: Hello,
// the current configuration (pushed on a ControlStream, polled with
// GetConfig as the fallback), PushStatus heartbeats, and reconnection with
// jittered backoff when a gateway replica goes away. The data path
// (StreamStatus) uses Client on the same connection.
package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/serviceradar/sync-operator/identity/renewal"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/workers/backoff"
)

// callTimeout bounds each unary call; streams live until they break.
const callTimeout = 30 * time.Second

// Config configures an uplink.
type Config struct {
	// Target is the gateway's gRPC target (host:port, or any gRPC target
	// with a resolver given in DialOptions).
	Target string
	// Creds are the worker's mTLS credentials (mtls.ClientConfig).
	Creds credentials.TransportCredentials
	// DialOptions are added to the connection's options.
	DialOptions []grpc.DialOption
	// Hello is what the worker says about itself; AgentID must be the
	// component id of its certificate.
	AgentID, Partition, Version, Hostname, OS, Arch string
	Capabilities                                    []string
	// MinBackoff and MaxBackoff bound the reconnection delays (defaults 250 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
	// Commands are the command types the worker performs when the gateway
	// sends them on the ControlStream. Every command is acknowledged at once
	// and answered with a CommandResult; a type not listed here gets
	// success=false and a message saying so, never a broken stream.
	Commands map[string]CommandHandler
	// Renewer, when set, renews the worker's own edge certificate over the
	// ControlStream (renewal.Files): its requests go out on the stream, the
	// answers come back to it. RenewCheck is how often it is asked whether a
	// renewal is due (default 1 minute; Wake asks at once).
	Renewer    Renewer
	RenewCheck time.Duration
	// Log receives connection events (never configuration contents).
	Log logr.Logger
}

// Renewer renews a worker's certificate (renewal.Files implements it).
type Renewer interface {
	// Next is the request to send now, or nil; resend is true on a new
	// stream, which sends a request still waiting for its answer again.
	Next(resend bool) (*renewal.Request, error)
	// Answer takes the gateway's answer and returns the serial of the
	// certificate now in use, or why none is.
	Answer(requestID string, issued bool, certPEM []byte, reason, message string) (string, error)
	// Wake is closed when Next should be asked at once.
	Wake() <-chan struct{}
}

// CommandHandler performs one command: req carries its id, type and JSON
// payload; ctx ends when the command's TTL passes or the worker stops.
// Handlers run on their own goroutine, one per command.
type CommandHandler func(ctx context.Context, req *pb.CommandRequest) CommandOutcome

// CommandOutcome is what a handler reports back in the CommandResult.
type CommandOutcome struct {
	// Success says whether the command did what it was asked.
	Success bool
	// Message explains the outcome, for people.
	Message string
	// Payload is an optional JSON result.
	Payload []byte
}

// maxCommandsInFlight bounds the commands a worker runs at once on one
// ControlStream; more are answered success=false at once.
const maxCommandsInFlight = 8

// Update is a configuration the gateway served.
type Update struct {
	// Version is the config_version; Raw the bundle's canonical JSON.
	Version string
	Raw     []byte
	// Bundle is Raw decoded.
	Bundle bundle.Sync
	// Heartbeat and Poll are the intervals the gateway asks for.
	Heartbeat, Poll time.Duration
}

// Uplink is safe for concurrent use.
type Uplink struct {
	cfg    Config
	conn   *grpc.ClientConn
	client pb.AgentGatewayServiceClient

	mu        sync.Mutex
	current   Update
	heartbeat time.Duration
	poll      time.Duration
	tenantID  string
	slug      string
}

// New creates the connection (gRPC connects lazily and reconnects by itself).
func New(cfg Config) (*Uplink, error) {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.RenewCheck <= 0 {
		cfg.RenewCheck = time.Minute
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(cfg.Creds)}, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Target, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to the gateway at %s: %w", cfg.Target, err)
	}
	return &Uplink{cfg: cfg, conn: conn, client: pb.NewAgentGatewayServiceClient(conn),
		heartbeat: 30 * time.Second, poll: 300 * time.Second}, nil
}

// Client is the gateway client on the uplink's connection.
func (u *Uplink) Client() pb.AgentGatewayServiceClient { return u.client }

// Close closes the connection.
func (u *Uplink) Close() error {
	if err := u.conn.Close(); err != nil {
		return fmt.Errorf("closing the gateway connection: %w", err)
	}
	return nil
}

// Current is the last configuration delivered, zero before the first.
func (u *Uplink) Current() Update {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.current
}

// Tenant is the tenant id and slug the gateway assigned in its Hello answer.
func (u *Uplink) Tenant() (id, slug string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.tenantID, u.slug
}

func (u *Uplink) backoff() *backoff.Exponential {
	return backoff.New(u.cfg.MinBackoff, u.cfg.MaxBackoff)
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Run keeps the worker's configuration current until ctx ends, calling apply
// with every new configuration, one at a time, in order: after Hello, from
// the ControlStream (each acknowledged once apply returned) and from
// GetConfig polls. It sends a heartbeat on the gateway's interval. Every
// failure is retried with backoff; Run returns only when ctx ends.
func (u *Uplink) Run(ctx context.Context, apply func(Update)) error {
	var applyMu sync.Mutex
	deliver := func(resp *pb.AgentConfigResponse) (bool, error) {
		applyMu.Lock()
		defer applyMu.Unlock()
		if resp.GetNotModified() || resp.GetConfigVersion() == u.Current().Version {
			return false, nil
		}
		up := Update{Version: resp.GetConfigVersion(), Raw: resp.GetConfigJson(),
			Heartbeat: time.Duration(resp.GetHeartbeatIntervalSec()) * time.Second,
			Poll:      time.Duration(resp.GetConfigPollIntervalSec()) * time.Second}
		if err := json.Unmarshal(up.Raw, &up.Bundle); err != nil {
			return false, fmt.Errorf("decoding configuration %s: %w", up.Version, err)
		}
		u.mu.Lock()
		u.current = up
		if up.Heartbeat > 0 {
			u.heartbeat = up.Heartbeat
		}
		if up.Poll > 0 {
			u.poll = up.Poll
		}
		u.mu.Unlock()
		apply(up)
		return true, nil
	}

	if !u.hello(ctx) {
		return nil
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); u.stream(ctx, deliver) }()
	go func() { defer wg.Done(); u.tick(ctx, deliver) }()
	wg.Wait()
	return nil
}

// hello says Hello until the gateway accepts; false when ctx ended first.
func (u *Uplink) hello(ctx context.Context) bool {
	b := u.backoff()
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := u.client.Hello(cctx, &pb.AgentHelloRequest{
			AgentId: u.cfg.AgentID, Version: u.cfg.Version, Capabilities: u.cfg.Capabilities, Hostname: u.cfg.Hostname,
			Os: u.cfg.OS, Arch: u.cfg.Arch, Partition: u.cfg.Partition, ConfigVersion: u.Current().Version,
		}, grpc.WaitForReady(true))
		cancel()
		if err == nil && resp.GetAccepted() {
			u.mu.Lock()
			u.tenantID, u.slug = resp.GetTenantId(), resp.GetTenantSlug()
			if hb := resp.GetHeartbeatIntervalSec(); hb > 0 {
				u.heartbeat = time.Duration(hb) * time.Second
			}
			u.mu.Unlock()
			u.cfg.Log.Info("gateway accepted the worker", "gateway", resp.GetGatewayId(), "tenant", resp.GetTenantSlug())
			return true
		}
		if err == nil {
			err = fmt.Errorf("not accepted: %s", resp.GetMessage())
		}
		if ctx.Err() != nil {
			return false
		}
		d := b.Next()
		u.cfg.Log.Info("hello failed; retrying", "error", err.Error(), "in", d.String())
		if !sleep(ctx, d) {
			return false
		}
	}
}

// stream holds a ControlStream open, reopening it with backoff.
func (u *Uplink) stream(ctx context.Context, deliver func(*pb.AgentConfigResponse) (bool, error)) {
	b := u.backoff()
	for ctx.Err() == nil {
		received, err := u.streamOnce(ctx, deliver)
		if ctx.Err() != nil {
			return
		}
		if received {
			b = u.backoff() // it worked for a while: start over from the shortest delay
		}
		d := b.Next()
		u.cfg.Log.Info("control stream ended; reconnecting", "error", fmt.Sprint(err), "in", d.String())
		if !sleep(ctx, d) {
			return
		}
	}
}

// streamOnce runs one ControlStream until it breaks; received reports
// whether any configuration arrived on it.
func (u *Uplink) streamOnce(ctx context.Context, deliver func(*pb.AgentConfigResponse) (bool, error)) (received bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := u.client.ControlStream(sctx, grpc.WaitForReady(true))
	if err != nil {
		return false, fmt.Errorf("opening the control stream: %w", err)
	}
	err = st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{
		AgentId: u.cfg.AgentID, Partition: u.cfg.Partition, Capabilities: u.cfg.Capabilities, ConfigVersion: u.Current().Version,
		Version: u.cfg.Version, Hostname: u.cfg.Hostname, Os: u.cfg.OS, Arch: u.cfg.Arch,
	}}})
	if err != nil {
		return false, fmt.Errorf("sending the stream hello: %w", err)
	}
	// Command results are sent from their handlers' goroutines, acks and
	// config acks from this one: one send at a time.
	var sendMu sync.Mutex
	send := func(req *pb.ControlStreamRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return st.Send(req) //nolint:wrapcheck // callers wrap it
	}
	var running sync.WaitGroup
	defer func() {
		cancel() // ends the handlers' contexts
		running.Wait()
	}()
	inFlight := make(chan struct{}, maxCommandsInFlight)
	if u.cfg.Renewer != nil {
		running.Add(1)
		go func() { defer running.Done(); u.renew(sctx, send) }()
	}
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return received, errors.New("the gateway closed the control stream")
		}
		if err != nil {
			return received, fmt.Errorf("receiving on the control stream: %w", err)
		}
		if cmd := msg.GetCommand(); cmd != nil {
			if err := u.command(sctx, cmd, send, inFlight, &running); err != nil {
				return received, err
			}
			continue
		}
		if ans := msg.GetCertificateRenewal(); ans != nil {
			u.renewed(ans)
			continue
		}
		cfg := msg.GetConfig()
		if cfg == nil {
			continue
		}
		received = true
		if _, err := deliver(cfg); err != nil {
			return received, err
		}
		err = send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{
			ConfigVersion: cfg.GetConfigVersion(), Timestamp: time.Now().Unix(),
		}}})
		if err != nil {
			return received, fmt.Errorf("acknowledging config %s: %w", cfg.GetConfigVersion(), err)
		}
	}
}

// renew sends the Renewer's certificate requests on one ControlStream until
// it ends: at once (a request still waiting is sent again on the new
// stream), then whenever Wake fires or RenewCheck passes.
func (u *Uplink) renew(ctx context.Context, send func(*pb.ControlStreamRequest) error) {
	r := u.cfg.Renewer
	resend := true
	for {
		wake := r.Wake()
		req, err := r.Next(resend)
		resend = false
		switch {
		case err != nil:
			u.cfg.Log.Info("preparing a certificate renewal failed", "error", err.Error())
		case req != nil:
			err := send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CertificateRequest{CertificateRequest: &pb.CertificateSigningRequest{
				CsrPem: req.CSRPEM, Proof: req.Proof, Timestamp: time.Now().Unix(),
			}}})
			if err != nil {
				return // the stream is broken; the next one sends it again
			}
			u.cfg.Log.Info("sent a certificate renewal request", "request", req.ID)
		}
		t := time.NewTimer(u.cfg.RenewCheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// renewed hands the gateway's answer to a certificate request to the Renewer.
func (u *Uplink) renewed(ans *pb.CertificateRenewal) {
	serial, err := u.cfg.Renewer.Answer(ans.GetRequestId(), ans.GetIssued(), ans.GetCertificatePem(), ans.GetReason(), ans.GetMessage())
	if err != nil {
		u.cfg.Log.Info("certificate renewal not done", "request", ans.GetRequestId(), "error", err.Error())
		return
	}
	u.cfg.Log.Info("certificate renewed; new connections present it", "request", ans.GetRequestId(), "serial", serial)
}

// command acknowledges a command and answers it with a result: from its
// handler, run on its own goroutine, or at once when the type is unknown,
// the command expired or too many run already. Only a failed send ends the
// stream.
func (u *Uplink) command(ctx context.Context, cmd *pb.CommandRequest, send func(*pb.ControlStreamRequest) error,
	inFlight chan struct{}, running *sync.WaitGroup,
) error {
	id, typ := cmd.GetCommandId(), cmd.GetCommandType()
	result := func(o CommandOutcome) error {
		err := send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CommandResult{CommandResult: &pb.CommandResult{
			CommandId: id, CommandType: typ, Success: o.Success, Message: o.Message, PayloadJson: o.Payload, Timestamp: time.Now().Unix(),
		}}})
		if err != nil {
			return fmt.Errorf("sending the result of command %s: %w", id, err)
		}
		return nil
	}
	handler, known := u.cfg.Commands[typ]
	ackMsg := "accepted"
	if !known {
		ackMsg = "unknown command type"
	}
	err := send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CommandAck{CommandAck: &pb.CommandAck{
		CommandId: id, CommandType: typ, Timestamp: time.Now().Unix(), Message: ackMsg,
	}}})
	if err != nil {
		return fmt.Errorf("acknowledging command %s: %w", id, err)
	}
	var deadline time.Time
	if ttl := cmd.GetTtlSeconds(); ttl > 0 {
		deadline = time.Unix(cmd.GetCreatedAt(), 0).Add(time.Duration(ttl) * time.Second)
	}
	switch {
	case !known:
		u.cfg.Log.Info("refused a command of an unknown type", "command", id, "type", typ)
		return result(CommandOutcome{Message: fmt.Sprintf("unknown command type %q: this worker performs %v", typ, u.commandTypes())})
	case !deadline.IsZero() && !time.Now().Before(deadline):
		return result(CommandOutcome{Message: fmt.Sprintf("the command expired at %s", deadline.UTC().Format(time.RFC3339))})
	}
	select {
	case inFlight <- struct{}{}:
	default:
		return result(CommandOutcome{Message: fmt.Sprintf("busy: %d commands are running", maxCommandsInFlight)})
	}
	running.Add(1)
	go func() {
		defer running.Done()
		defer func() { <-inFlight }()
		hctx, cancel := ctx, context.CancelFunc(func() {})
		if !deadline.IsZero() {
			hctx, cancel = context.WithDeadline(ctx, deadline)
		}
		defer cancel()
		out := runHandler(hctx, handler, cmd)
		if err := result(out); err != nil {
			u.cfg.Log.Info("the command's result was not delivered", "command", id, "type", typ, "error", err.Error())
		}
	}()
	return nil
}

// runHandler runs a handler, turning a panic into a failed outcome.
func runHandler(ctx context.Context, h CommandHandler, cmd *pb.CommandRequest) (out CommandOutcome) {
	defer func() {
		if r := recover(); r != nil {
			out = CommandOutcome{Message: fmt.Sprintf("the command failed: %v", r)}
		}
	}()
	return h(ctx, cmd)
}

// commandTypes are the configured command types, sorted.
func (u *Uplink) commandTypes() []string {
	return slices.Sorted(maps.Keys(u.cfg.Commands))
}

// tick fetches the configuration at once and on every poll interval, and
// sends heartbeats on the heartbeat interval.
func (u *Uplink) tick(ctx context.Context, deliver func(*pb.AgentConfigResponse) (bool, error)) {
	nextPoll, nextBeat := time.Now(), time.Now()
	for {
		now := time.Now()
		u.mu.Lock()
		heartbeat, poll := u.heartbeat, u.poll
		u.mu.Unlock()
		if !now.Before(nextPoll) {
			if err := u.fetch(ctx, deliver); err != nil {
				u.cfg.Log.Info("polling the configuration failed", "error", err.Error())
				nextPoll = now.Add(min(poll, u.cfg.MaxBackoff))
			} else {
				nextPoll = now.Add(poll)
			}
		}
		if !now.Before(nextBeat) {
			if err := u.beat(ctx); err != nil {
				u.cfg.Log.Info("heartbeat failed", "error", err.Error())
			}
			nextBeat = now.Add(heartbeat)
		}
		next := nextBeat
		if nextPoll.Before(next) {
			next = nextPoll
		}
		if !sleep(ctx, time.Until(next)) {
			return
		}
	}
}

// fetch polls GetConfig once with the current version.
func (u *Uplink) fetch(ctx context.Context, deliver func(*pb.AgentConfigResponse) (bool, error)) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := u.client.GetConfig(cctx, &pb.AgentConfigRequest{AgentId: u.cfg.AgentID, ConfigVersion: u.Current().Version}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("GetConfig: %w", err)
	}
	_, err = deliver(resp)
	return err
}

// beat sends one heartbeat.
func (u *Uplink) beat(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := u.client.PushStatus(cctx, &pb.GatewayStatusRequest{AgentId: u.cfg.AgentID, Partition: u.cfg.Partition, Timestamp: time.Now().Unix()}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("PushStatus: %w", err)
	}
	return nil
}
