// Package gatewayproc runs the gateway binary as its own process for
// benchmarks and end-to-end tests: as its ServiceAccount with the RBAC it
// ships with on a test API server, plus the credentials Secrets that the
// manager's grant controller (run here on its own) gives it, a file identity
// issued by a test root CA, and optionally a PostgreSQL device store; and
// reads its resident memory.
package gatewayproc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

// Options configure a gateway process.
type Options struct {
	// Binary is the gateway binary; Dir a folder for its files.
	Binary, Dir string
	// Env is the API server; Root issues the gateway's SVID.
	Env  *kubetest.Env
	Root *ca.Authority
	// PostgresDSN enables the device store.
	PostgresDSN string
	// Args are added to the command line.
	Args []string
	// ProbeInterval spaces the health probes Start waits with, and the
	// probe's reconnections (default: 200 ms between probes, gRPC's
	// reconnection backoff): shorter measures Process.Ready closer.
	ProbeInterval time.Duration
}

// Process is a running gateway.
type Process struct {
	// Addr is its gRPC address.
	Addr string
	// Started is when the process was started; Ready how long after it
	// the gateway first answered its health check SERVING.
	Started time.Time
	Ready   time.Duration
	cmd     *exec.Cmd
	// stopGrants stops the grant controller.
	stopGrants func()
}

// Namespace and ServiceAccount the gateway runs as, as the chart installs it.
const (
	Namespace      = "serviceradar-system"
	ServiceAccount = "sync-gateway"
)

// startGrants runs the manager's controller that grants the gateway the
// credentials Secrets sources reference (the test API server's admin stands
// in for the manager's own RBAC), until the returned stop is called.
func startGrants(env *kubetest.Env) (func(), error) {
	skip := true
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Logger: logr.Discard(),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: ctrlconfig.Controller{SkipNameValidation: &skip}})
	if err != nil {
		return nil, fmt.Errorf("creating the grant controller's manager: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.SetupGatewayAccess(ctx, mgr, controllers.Options{Namespace: Namespace, GatewayServiceAccount: ServiceAccount}); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Start(ctx)
	}()
	return func() { cancel(); <-done }, nil
}

// Start starts the gateway and waits until it serves (probed with client,
// any identity the gateway accepts).
func Start(ctx context.Context, o Options) (*Process, error) {
	gw, err := o.Root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw"), 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("issuing the gateway's SVID: %w", err)
	}
	files, err := pkitest.WriteFiles(filepath.Join(o.Dir, "gateway"), gw, o.Root.Cert)
	if err != nil {
		return nil, err
	}
	user, err := o.Env.UserWithRoles(ctx, "system:serviceaccount:"+Namespace+":"+ServiceAccount, "config/rbac/gateway/role.yaml")
	if err != nil {
		return nil, err
	}
	stopGrants, err := startGrants(o.Env)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		stopGrants()
		return nil, fmt.Errorf("rendering the gateway's kubeconfig: %w", err)
	}
	kubeconfigPath := filepath.Join(o.Dir, "gateway.kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		stopGrants()
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	addr, err := FreeAddr()
	if err != nil {
		stopGrants()
		return nil, err
	}
	args := append([]string{"--listen=" + addr, "--metrics-bind-address=", "--cert-file=" + files.Cert, "--key-file=" + files.Key,
		"--ca-file=" + files.CA, "--gateway-id=bench", "--zap-log-level=error", "--postgres-dsn=" + o.PostgresDSN}, o.Args...)
	cmd := exec.Command(o.Binary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath)
	cmd.Stderr = os.Stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		stopGrants()
		return nil, fmt.Errorf("starting %s: %w", o.Binary, err)
	}
	p := &Process{Addr: addr, Started: started, cmd: cmd, stopGrants: stopGrants}
	if err := p.waitServing(ctx, o.Root, o.Dir, o.ProbeInterval); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// waitServing probes the health service with a throwaway client identity,
// every interval when set.
func (p *Process) waitServing(ctx context.Context, root *ca.Authority, dir string, interval time.Duration) error {
	probe, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/probe/default/probe"), time.Hour)
	if err != nil {
		return fmt.Errorf("issuing the probe's SVID: %w", err)
	}
	f, err := pkitest.WriteFiles(filepath.Join(dir, "probe"), probe, root.Cert)
	if err != nil {
		return err
	}
	classifier, err := identity.NewClassifier("", "")
	if err != nil {
		return fmt.Errorf("classifier: %w", err)
	}
	src, err := mtls.NewFileSource(f.Cert, f.Key, f.CA, classifier.TrustDomain)
	if err != nil {
		return fmt.Errorf("probe identity: %w", err)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{})))}
	if interval > 0 {
		opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: interval, Multiplier: 1, MaxDelay: interval}}))
	} else {
		interval = 200 * time.Millisecond
	}
	conn, err := grpc.NewClient(p.Addr, opts...)
	if err != nil {
		return fmt.Errorf("connecting to the gateway: %w", err)
	}
	defer func() { _ = conn.Close() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{Service: pb.AgentGatewayService_ServiceDesc.ServiceName})
		cancel()
		if err == nil && h.Status == healthpb.HealthCheckResponse_SERVING {
			p.Ready = time.Since(p.Started)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateway is not serving: %w", err)
		}
		time.Sleep(interval)
	}
}

// Stop stops the gateway (SIGINT, then waits) and the grant controller.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
	p.stopGrants()
}

// Signal sends the gateway a signal, e.g. syscall.SIGTERM as the kubelet
// does when its pod is deleted.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling the gateway: %w", err)
	}
	return nil
}

// Wait waits for the gateway to exit and returns its exit code. Stop then
// only stops the grant controller.
func (p *Process) Wait() (int, error) {
	err := p.cmd.Wait()
	if p.cmd.ProcessState == nil {
		return -1, fmt.Errorf("waiting for the gateway: %w", err)
	}
	return p.cmd.ProcessState.ExitCode(), nil
}

// Memory returns the process's peak and current resident memory in MiB.
func (p *Process) Memory() (peak, current int64, err error) {
	return Memory(p.cmd.Process.Pid)
}

// CPU returns the process's user+system CPU time so far.
func (p *Process) CPU() (time.Duration, error) {
	return CPU(p.cmd.Process.Pid)
}

// CPU reads a process's user+system CPU time from /proc (Linux).
func CPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading process CPU time: %w", err)
	}
	// The command name may hold spaces: fields count from its closing ')'.
	_, rest, ok := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("reading process CPU time: unexpected /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// CPUOf sums the CPU time of every process whose command is name (for
// example the PostgreSQL server's processes).
func CPUOf(name string) (time.Duration, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("listing processes: %w", err)
	}
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		if d, err := CPU(pid); err == nil {
			total += d
		}
	}
	return total, nil
}

// Memory reads a process's peak and current resident memory in MiB.
func Memory(pid int) (peak, current int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading process memory: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmHWM:":
			peak = kb / 1024
		case "VmRSS:":
			current = kb / 1024
		}
	}
	return peak, current, nil
}

// FreeAddr is a free loopback address.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// Main is the TestMain of a package whose tests run the gateway binary: it
// builds ./cmd/gateway into a temporary directory, sets *binary to it, runs
// the tests with a PostgreSQL server (pgtest.Run) and returns their exit
// code. The gateway's grant controller runs in the test process, so its
// logger is discarded.
func Main(m *testing.M, binary *string) int {
	ctrllog.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "gateway-binary-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if *binary, err = test.BuildBinary(dir, "./cmd/gateway"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return pgtest.Run(m)
}
