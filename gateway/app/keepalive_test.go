package app_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

// keepaliveGateway runs the gateway process (app.Run) with a keepalive
// policy and returns its address, the root CA and a client TLS config.
func keepaliveGateway(t *testing.T, k server.Keepalive) (string, *tls.Config) {
	t.Helper()
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	root, _ := ca.NewRoot("root", 0, nil)
	gw, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw-0"), time.Hour)
	dir := t.TempDir()
	gwFiles := pkitest.Write(t, filepath.Join(dir, "gw"), gw, root.Cert)
	kube, err := env.UserWithRoles(context.Background(), "gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{Kube: kube.Config(), Listen: "127.0.0.1:0", CertFile: gwFiles.Cert, KeyFile: gwFiles.Key, CAFile: gwFiles.CA,
			GatewayID: "gw-0", Log: logr.Discard(), Keepalive: k, Ready: func(addr string) { ready <- addr }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway stopped with %v", err)
		}
	})
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("gateway did not start")
	}
	// An agent, as ServiceRadar's agents identify.
	client, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/agent/acme/default/agent-1"), time.Hour)
	src := pkitest.Source(t, filepath.Join(dir, "client"), client, root.Cert)
	classifier, _ := identity.NewClassifier("", "")
	cfg := mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{})
	return addr, cfg
}

// pinger is an HTTP/2 client connection that only pings: an agent holding
// its gateway connection with no call open. gRPC's own client cannot ping
// more often than every 10 s, so the policy is proven at a smaller scale
// with HTTP/2 frames.
type pinger struct {
	conn    *tls.Conn
	mu      sync.Mutex // serializes frame writes
	fr      *http2.Framer
	acks    chan [8]byte
	settled chan struct{} // a SETTINGS acknowledgement arrived
	goaway  chan goAway
	closed  chan struct{}
}

// goAway is a GOAWAY frame's error code and debug data.
type goAway struct {
	code  http2.ErrCode
	debug string
}

func (g goAway) Error() string { return fmt.Sprintf("GOAWAY %v %q", g.code, g.debug) }

func dialPinger(t *testing.T, addr string, cfg *tls.Config) *pinger {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	p := &pinger{conn: conn, fr: http2.NewFramer(conn, conn), acks: make(chan [8]byte, 64), settled: make(chan struct{}, 8),
		goaway: make(chan goAway, 1), closed: make(chan struct{})}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := p.write(func(fr *http2.Framer) error { return fr.WriteSettings() }); err != nil {
		t.Fatal(err)
	}
	go p.read()
	return p
}

func (p *pinger) write(f func(*http2.Framer) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f(p.fr)
}

// read answers the server's SETTINGS and pings, as any HTTP/2 client does,
// and reports ping acks and a GOAWAY.
func (p *pinger) read() {
	defer close(p.closed)
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				p.settled <- struct{}{}
			} else if p.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() }) != nil {
				return
			}
		case *http2.PingFrame:
			if f.IsAck() {
				p.acks <- f.Data
			} else if p.write(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) }) != nil {
				return
			}
		case *http2.GoAwayFrame:
			// The frame's buffer is reused by the next read.
			select {
			case p.goaway <- goAway{code: f.ErrCode, debug: string(f.DebugData())}:
			default:
			}
		}
	}
}

// ping sends ping n and waits (bounded) for its acknowledgement.
func (p *pinger) ping(n int) error {
	data := [8]byte{byte(n)}
	if err := p.write(func(fr *http2.Framer) error { return fr.WritePing(false, data) }); err != nil {
		return fmt.Errorf("ping %d: %w", n, err)
	}
	select {
	case got := <-p.acks:
		if got != data {
			return fmt.Errorf("ping %d acknowledged as %v", n, got)
		}
		return nil
	case g := <-p.goaway:
		return g
	case <-p.closed:
		return fmt.Errorf("ping %d: connection closed", n)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("ping %d was not acknowledged", n)
	}
}

// barrier returns once the server has processed every frame sent before
// it: it acknowledges a SETTINGS frame after those, and a GOAWAY they
// caused would come first.
func (p *pinger) barrier() error {
	if err := p.write(func(fr *http2.Framer) error { return fr.WriteSettings() }); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	for {
		select {
		case <-p.settled:
			select {
			case g := <-p.goaway:
				return g
			default:
				return nil
			}
		case g := <-p.goaway:
			return g
		case <-p.closed:
			return errors.New("connection closed")
		case <-time.After(10 * time.Second):
			return errors.New("settings were not acknowledged")
		}
	}
}

// TestIdleClientsPingingAtThePolicyIntervalStayConnected proves the keepalive
// rule at a small scale: with a minimum ping interval of 300 ms (the
// default is 15 s for agents pinging every 30 s), a client with no call open
// that pings every 600 ms keeps its connection, and one that pings every
// 10 ms is sent GOAWAY too_many_pings. grpc-go's default policy (one ping
// in 5 minutes, none without a call) sends the first one away too.
func TestIdleClientsPingingAtThePolicyIntervalStayConnected(t *testing.T) {
	const minInterval = 300 * time.Millisecond
	addr, cfg := keepaliveGateway(t, server.Keepalive{MinPingInterval: minInterval, Time: time.Hour, Timeout: 20 * time.Second})

	t.Run("a client pinging at twice the minimum interval stays", func(t *testing.T) {
		p := dialPinger(t, addr, cfg)
		if err := p.barrier(); err != nil {
			t.Fatal(err)
		}
		// grpc-go strikes a ping that comes too early and sends GOAWAY at
		// the third strike: six pings are past it. Twice the minimum leaves
		// room for scheduling delays on a loaded machine.
		for n := range 6 {
			if n > 0 {
				time.Sleep(2 * minInterval) // the client's ping interval, not an assertion
			}
			if err := p.ping(n); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.barrier(); err != nil {
			t.Fatalf("after six pings at the allowed interval: %v", err)
		}
	})
	t.Run("a client pinging faster than the policy is sent away", func(t *testing.T) {
		p := dialPinger(t, addr, cfg)
		if err := p.barrier(); err != nil {
			t.Fatal(err)
		}
		var g goAway
		for n := 0; ; n++ {
			err := p.ping(n)
			if errors.As(err, &g) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if n == 20 {
				t.Fatal("a client pinging every 10 ms was not sent away after 20 pings")
			}
			time.Sleep(10 * time.Millisecond) // the client's ping interval
		}
		if g.code != http2.ErrCodeEnhanceYourCalm || g.debug != "too_many_pings" {
			t.Fatalf("%v, want ENHANCE_YOUR_CALM too_many_pings", g)
		}
	})
}

// TestIdleAgentSoak is the benchmark-style check of the real interval: a
// gRPC client configured as ServiceRadar's agents are (a ping every 30 s,
// 10 s timeout, also without a call) says Hello and then stays idle for
// SYNC_KEEPALIVE_SOAK (a duration, e.g. 10m) against the default policy;
// its connection must never leave READY. Skipped unless the variable is set.
func TestIdleAgentSoak(t *testing.T) {
	soak := os.Getenv("SYNC_KEEPALIVE_SOAK")
	if soak == "" {
		t.Skip("set SYNC_KEEPALIVE_SOAK=10m to hold an idle upstream-style connection that long")
	}
	d, err := time.ParseDuration(soak)
	if err != nil {
		t.Fatalf("SYNC_KEEPALIVE_SOAK: %v", err)
	}
	addr, cfg := keepaliveGateway(t, server.Keepalive{})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	// No tenant exists: the agent is refused, but the call opens the connection.
	if _, err := pb.NewAgentGatewayServiceClient(conn).Hello(ctx, &pb.AgentHelloRequest{AgentId: "agent-1"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Hello: %v", err)
	}
	if s := conn.GetState(); s != connectivity.Ready {
		t.Fatalf("state %v after Hello", s)
	}
	idle, stop := context.WithTimeout(ctx, d)
	defer stop()
	if conn.WaitForStateChange(idle, connectivity.Ready) {
		t.Fatalf("the idle connection left READY (now %v) before %s", conn.GetState(), d)
	}
	t.Logf("idle for %s with a ping every 30 s: still %v", d, conn.GetState())
}
