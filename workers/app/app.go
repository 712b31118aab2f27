// Package app wires the sync worker process: the bootstrap file, the
// identity (PEM files or the SPIFFE Workload API), the uplink to the
// gateway, the sync loops and the metrics endpoint; and stops them in order
// on shutdown, so that no segment is left half sent.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/credentials"

	"github.com/serviceradar/sync-operator/diag"
	"github.com/serviceradar/sync-operator/gateway/commands"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/workers/runner"
	"github.com/serviceradar/sync-operator/workers/uplink"
	"github.com/serviceradar/sync-operator/workload"
)

// Config is what the worker process needs besides its bootstrap file.
type Config struct {
	// BootstrapFile is the path of the bootstrap JSON.
	BootstrapFile string
	// Metrics is the Prometheus address when the bootstrap has none ("" disables).
	Metrics string
	// Pprof serves net/http/pprof for diagnostics ("" disables it, the
	// default; bind it to loopback).
	Pprof string
	// TrustDomain is the SPIFFE trust domain.
	TrustDomain string
	// Version is reported to the gateway.
	Version string
	Log     logr.Logger
	// Runner tunes the sync loops (Gateway, AgentID and Log are set here).
	Runner runner.Options
	// Ready is called once the worker has its first configuration.
	Ready func()
	// RenewCertificate, when not nil, asks an edge worker to renew its
	// certificate at each receive, due or not (it renews by itself at two
	// thirds of the certificate's lifetime).
	RenewCertificate <-chan struct{}
}

// LoadBootstrap reads and checks a bootstrap file. Relative identity file
// paths are taken from the bootstrap's own directory, not the working
// directory: an onboarding bundle (config.json naming ./tls.crt, ./tls.key
// and ./ca.crt) runs as `worker --config <dir>/config.json` from anywhere.
func LoadBootstrap(path string) (workload.Bootstrap, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the operator-given bootstrap path
	if err != nil {
		return workload.Bootstrap{}, fmt.Errorf("reading bootstrap: %w", err)
	}
	b, err := LoadBootstrapJSON(data)
	if err != nil {
		return b, fmt.Errorf("bootstrap %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, f := range []*string{&b.Identity.CertFile, &b.Identity.KeyFile, &b.Identity.CAFile} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
	return b, nil
}

// LoadBootstrapJSON parses and checks a bootstrap; errors name the field.
func LoadBootstrapJSON(data []byte) (workload.Bootstrap, error) {
	var b workload.Bootstrap
	if err := json.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("decoding: %w", err)
	}
	id := b.Identity
	switch {
	case b.GatewayAddress == "":
		return b, errors.New("gateway_address is required")
	case b.ComponentID == "":
		return b, errors.New("component_id is required")
	case id.Source != workload.IdentityFiles && id.Source != workload.IdentityWorkloadAPI:
		return b, fmt.Errorf("identity.source must be %q or %q", workload.IdentityFiles, workload.IdentityWorkloadAPI)
	case id.Source == workload.IdentityFiles && (id.CertFile == "" || id.KeyFile == "" || id.CAFile == ""):
		return b, fmt.Errorf("identity.cert_file, identity.key_file and identity.ca_file are required with identity.source %q", workload.IdentityFiles)
	}
	if _, _, err := net.SplitHostPort(b.GatewayAddress); err != nil {
		return b, fmt.Errorf("gateway_address %q must be host:port: %w", b.GatewayAddress, err)
	}
	if b.Partition == "" {
		b.Partition = "default"
	}
	return b, nil
}

// credentialsFor builds the worker's mTLS client credentials.
func credentialsFor(ctx context.Context, b workload.Bootstrap, classifier identity.Classifier) (credentials.TransportCredentials, func(), error) {
	want := mtls.ServerExpectation{ServerName: b.Identity.ServerName}
	if b.Identity.ExpectedGatewayID != "" {
		id, err := spiffeid.FromString(b.Identity.ExpectedGatewayID)
		if err != nil {
			return nil, nil, fmt.Errorf("bootstrap identity.expected_gateway_id: %w", err)
		}
		want.SPIFFEID = id
	}
	var src mtls.Source
	closeSrc := func() {}
	switch b.Identity.Source {
	case workload.IdentityFiles:
		fs, err := mtls.NewFileSource(b.Identity.CertFile, b.Identity.KeyFile, b.Identity.CAFile, classifier.TrustDomain)
		if err != nil {
			return nil, nil, fmt.Errorf("loading the worker's certificate: %w", err)
		}
		src = fs
	default:
		opts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(workloadapi.WithAddr(b.Identity.WorkloadAPISocket))}
		if b.Identity.SPIFFEID != "" {
			id, err := spiffeid.FromString(b.Identity.SPIFFEID)
			if err != nil {
				return nil, nil, fmt.Errorf("bootstrap identity.spiffe_id: %w", err)
			}
			opts = append(opts, mtls.PickSVID(id))
		}
		x, err := workloadapi.NewX509Source(ctx, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("connecting to the Workload API at %s: %w", b.Identity.WorkloadAPISocket, err)
		}
		src, closeSrc = mtls.NewWorkloadSource(x, nil), func() { _ = x.Close() }
	}
	return credentials.NewTLS(mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, want)), closeSrc, nil
}

// RunNow performs a commands.RunNowType command on r: the run starts now or
// after the one in progress (success), or the worker says why it cannot
// (a malformed payload, a source it does not run).
func RunNow(r *runner.Runner, req *pb.CommandRequest) uplink.CommandOutcome {
	cmd, err := commands.DecodeRunNow(req.GetPayloadJson())
	if err != nil {
		return uplink.CommandOutcome{Message: err.Error()}
	}
	mode := runner.ModeFull
	if cmd.Mode == commands.ModeIncremental {
		mode = runner.ModeIncremental
	}
	msg, err := r.RunNow(cmd.IntegrationSourceUID, mode, cmd.RequestedAt)
	if err != nil {
		return uplink.CommandOutcome{Message: err.Error()}
	}
	return uplink.CommandOutcome{Success: true, Message: msg}
}

// Run runs the worker until ctx ends.
func Run(ctx context.Context, c Config) error {
	b, err := LoadBootstrap(c.BootstrapFile)
	if err != nil {
		return err
	}
	classifier, err := identity.NewClassifier(c.TrustDomain, "")
	if err != nil {
		return fmt.Errorf("trust domain: %w", err)
	}
	creds, closeCreds, err := credentialsFor(ctx, b, classifier)
	if err != nil {
		return err
	}
	defer closeCreds()
	renewer, err := edgeRenewer(ctx, b, c.RenewCertificate)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	// The runner needs the uplink's client and the uplink the runner's
	// commands: r is set before the uplink runs, and so before any command.
	var r *runner.Runner
	up, err := uplink.New(uplink.Config{Target: b.GatewayAddress, Creds: creds, AgentID: b.ComponentID, Partition: b.Partition,
		Version: c.Version, Hostname: host, OS: runtime.GOOS, Arch: runtime.GOARCH,
		Capabilities: []string{"armis", "netbox", "faker"}, Log: c.Log.WithName("uplink"), Renewer: renewer,
		Commands: map[string]uplink.CommandHandler{
			commands.RunNowType: func(_ context.Context, req *pb.CommandRequest) uplink.CommandOutcome { return RunNow(r, req) },
		}})
	if err != nil {
		return err
	}
	defer func() { _ = up.Close() }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ro := c.Runner
	ro.Gateway, ro.AgentID, ro.Log, ro.Metrics = up.Client(), b.ComponentID, c.Log.WithName("runner"), runner.NewMetrics(reg)
	r = runner.New(ro)

	metricsAddr := b.MetricsAddress
	if metricsAddr == "" {
		metricsAddr = c.Metrics
	}
	if metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
		metricsSrv, err := diag.Serve(metricsAddr, mux, c.Log)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer metricsSrv.Stop()
	}
	if c.Pprof != "" {
		pprofSrv, err := diag.Serve(c.Pprof, diag.Pprof(), c.Log)
		if err != nil {
			return fmt.Errorf("pprof: %w", err)
		}
		defer pprofSrv.Stop()
	}
	c.Log.Info("worker starting", "gateway", b.GatewayAddress, "component", b.ComponentID, "partition", b.Partition)
	first := true
	err = up.Run(ctx, func(u uplink.Update) {
		c.Log.Info("configuration applied", "version", u.Version, "sources", len(u.Bundle.Sources))
		r.Apply(ctx, u.Bundle)
		if first && c.Ready != nil {
			first = false
			c.Ready()
		}
	})
	// Shutdown: every loop's run is cancelled; a segment in flight is either
	// acknowledged or not applied at all, never half.
	r.Stop()
	c.Log.Info("worker stopped")
	return err //nolint:wrapcheck // uplink.Run returns nil on shutdown
}
