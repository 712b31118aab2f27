// Package app wires the sync worker process: the bootstrap file, the
// identity (PEM files or the SPIFFE Workload API), the uplink to the
// gateway, the sync loops and the metrics endpoint; and stops them in order
// on shutdown, so that no segment is left half sent.
package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"

	"github.com/serviceradar/sync-operator/diag"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/wire/commands"
	"github.com/serviceradar/sync-operator/workers/runner"
	"github.com/serviceradar/sync-operator/workers/uplink"
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

// credentialsFor builds the worker's mTLS client credentials.
func credentialsFor(ctx context.Context, b bootstrap.Config, classifier identity.Classifier) (credentials.TransportCredentials, func(), error) {
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
	case bootstrap.IdentityFiles:
		fs, err := mtls.NewFileSource(b.Identity.CertFile, b.Identity.KeyFile, b.Identity.CAFile, classifier.TrustDomain)
		if err != nil {
			return nil, nil, fmt.Errorf("loading the worker's certificate: %w", err)
		}
		src = fs
	default:
		var id spiffeid.ID
		if b.Identity.SPIFFEID != "" {
			parsed, err := spiffeid.FromString(b.Identity.SPIFFEID)
			if err != nil {
				return nil, nil, fmt.Errorf("bootstrap identity.spiffe_id: %w", err)
			}
			id = parsed
		}
		ws, err := mtls.DialWorkloadAPI(ctx, b.Identity.WorkloadAPISocket, id, nil)
		if err != nil {
			return nil, nil, err
		}
		src, closeSrc = ws, func() { _ = ws.Close() }
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
	b, err := bootstrap.Load(c.BootstrapFile)
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
