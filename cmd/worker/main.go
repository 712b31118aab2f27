// Command worker is the sync worker: it starts from a bootstrap file, gets
// its configuration from the agent-gateway, and syncs its tenant's sources.
// This file only parses flags.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/serviceradar/sync-operator/diag"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/version"
	"github.com/serviceradar/sync-operator/workers/app"
	"github.com/serviceradar/sync-operator/workload"
)

func main() {
	var c app.Config
	flag.StringVar(&c.BootstrapFile, "config", workload.BootstrapDir+"/"+workload.BootstrapFile, "bootstrap JSON file")
	flag.StringVar(&c.Metrics, "metrics-bind-address", ":9090", "Prometheus metrics address when the bootstrap sets none (empty disables it)")
	flag.StringVar(&c.Pprof, "pprof-bind-address", "", "net/http/pprof address for diagnostics, e.g. 127.0.0.1:6061 (empty disables it)")
	flag.StringVar(&c.TrustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain")
	flag.DurationVar(&c.Runner.RunTimeout, "run-timeout", 0, "longest a sync run may take (default 1h)")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	gcPercent := flag.Int("gc-percent", diag.DefaultGCPercent, "garbage collector target percent when GOGC is not set (0: the Go default of 100)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	diag.SetGCPercent(*gcPercent)
	if *showVersion {
		fmt.Println(version.String("worker"))
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	c.Log = ctrl.Log.WithName("worker")
	c.Version = version.Version
	if err := app.Run(ctrl.SetupSignalHandler(), c); err != nil {
		c.Log.Error(err, "worker stopped")
		os.Exit(1)
	}
}
