// Command worker is the sync worker: it starts from a bootstrap file, gets
// its configuration from the agent-gateway, and syncs its tenant's sources.
// This file parses flags; log.go builds the logger they describe.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/serviceradar/sync-operator/diag"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/version"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workers/app"
)

func main() {
	var c app.Config
	flag.StringVar(&c.BootstrapFile, "config", bootstrap.Path, "bootstrap JSON file")
	flag.StringVar(&c.Metrics, "metrics-bind-address", ":9090", "Prometheus metrics address when the bootstrap sets none (empty disables it)")
	flag.StringVar(&c.Pprof, "pprof-bind-address", "", "net/http/pprof address for diagnostics, e.g. 127.0.0.1:6061 (empty disables it)")
	flag.StringVar(&c.TrustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain")
	flag.DurationVar(&c.Runner.RunTimeout, "run-timeout", 0, "longest a sync run may take (default 1h)")
	var logOpts logOptions
	logOpts.bindFlags(flag.CommandLine)
	gcPercent := flag.Int("gc-percent", diag.DefaultGCPercent, "garbage collector target percent when GOGC is not set (0: the Go default of 100)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	diag.SetGCPercent(*gcPercent)
	if *showVersion {
		fmt.Println(version.String("worker"))
		return
	}
	c.Log = logOpts.logger(os.Stderr).WithName("worker")
	c.Version = version.Version
	// SIGTERM or SIGINT stops the worker in order; a second one kills it.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	go func() { <-ctx.Done(); stop() }()
	err := app.Run(ctx, c)
	stop()
	if err != nil {
		c.Log.Error(err, "worker stopped")
		os.Exit(1)
	}
}
