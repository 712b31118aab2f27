// Command bench-worker measures the sync worker (`make bench-worker`): the
// worker binary, started from a bootstrap file as the manager renders it,
// syncs an Armis emulator inventory of DEVICES devices (1,000,000 by
// default) through the gateway binary into PostgreSQL; the command reports
// devices per second from the worker's start to the source's successful run
// on its status, and the worker's peak resident memory. Then a Faker source
// of 50,000 devices is added to the running worker (pushed config) and timed
// from its creation to its successful run. It ends with one line:
// RESULT worker_devices_per_s=<n> worker_peak_rss_mib=<n> faker_50k_s=<n>.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
)

func main() {
	devices := flag.Int("devices", 1_000_000, "devices in the Armis inventory")
	fakerDevices := flag.Int("faker-devices", 50_000, "devices of the Faker run")
	gateway := flag.String("gateway", "bin/gateway", "the gateway binary")
	worker := flag.String("worker", "bin/worker", "the worker binary")
	workerPprof := flag.String("worker-pprof", "", "serve the worker's net/http/pprof here during the run, e.g. 127.0.0.1:6061")
	flag.Parse()
	if err := run(*devices, *fakerDevices, *gateway, *worker, *workerPprof); err != nil {
		fmt.Fprintln(os.Stderr, "bench-worker:", err)
		os.Exit(1)
	}
}

func run(devices, fakerDevices int, gatewayBin, workerBin, workerPprof string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-worker-")
	if err != nil {
		return fmt.Errorf("creating temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	defer func() { _ = pgtest.Stop() }()
	dsn, drop, err := pgtest.CreateDatabase(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = drop() }()

	emu := armisemu.New(armisemu.Options{Seed: 1, Devices: devices})
	emuURL := emu.Start()
	defer emu.Close()

	platformNS, acmeNS, err := tenants(ctx, env)
	if err != nil {
		return err
	}
	ref := v1alpha1.SyncServiceReference{Namespace: platformNS, Name: "platform-sync"}
	hour := &metav1.Duration{Duration: time.Hour}
	armis := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "armis", Namespace: acmeNS}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationArmis, Endpoint: emuURL, CredentialsSecretRef: &v1alpha1.SecretReference{Name: "armis"},
		Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}}, PageSize: 5000, PollInterval: hour, DiscoveryInterval: hour,
		SyncServiceRef: ref}}
	for _, o := range []client.Object{
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "platform-sync", Namespace: platformNS}, Spec: v1alpha1.SyncServiceSpec{Platform: true}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "armis", Namespace: acmeNS}, StringData: map[string]string{"secret_key": armisemu.DefaultSecretKey}},
		armis,
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}

	root, err := ca.NewRoot("bench root", 0, nil)
	if err != nil {
		return fmt.Errorf("creating root CA: %w", err)
	}
	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{Binary: gatewayBin, Dir: dir, Env: env, Root: root, PostgresDSN: dsn})
	if err != nil {
		return err
	}
	defer gw.Stop()

	svid, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/platform-sync-acme"), 24*time.Hour)
	if err != nil {
		return fmt.Errorf("issuing the worker's SVID: %w", err)
	}
	files, err := pkitest.WriteFiles(filepath.Join(dir, "worker"), svid, root.Cert)
	if err != nil {
		return err
	}
	boot, err := bootstrap.Config{GatewayAddress: gw.Addr, ComponentID: "platform-sync-acme", Partition: "default", TenantSlug: "acme",
		Identity: bootstrap.Identity{Source: bootstrap.IdentityFiles, CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA}}.JSON()
	if err != nil {
		return err
	}
	bootFile := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(bootFile, boot, 0o600); err != nil {
		return fmt.Errorf("writing bootstrap: %w", err)
	}
	logFile := filepath.Join(dir, "worker.log")
	logOut, err := os.Create(logFile) //nolint:gosec // a temp file of this bench
	if err != nil {
		return fmt.Errorf("creating worker log: %w", err)
	}
	defer func() { _ = logOut.Close() }()
	begin := time.Now()
	w := exec.Command(workerBin, "--config="+bootFile, "--metrics-bind-address=", "--pprof-bind-address="+workerPprof)
	w.Stdout, w.Stderr = logOut, logOut
	if err := w.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", workerBin, err)
	}
	defer func() {
		_ = w.Process.Signal(os.Interrupt)
		_ = w.Wait()
	}()
	fail := func(err error) error {
		tail, _ := os.ReadFile(logFile) //nolint:gosec // our temp file
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		return fmt.Errorf("%w\nworker log (end):\n%s", err, tail)
	}
	if err := waitRun(ctx, env, armis, devices, 30*time.Minute); err != nil {
		return fail(err)
	}
	took := time.Since(begin)
	rate := float64(devices) / took.Seconds()
	peak, current, err := gatewayproc.Memory(w.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("armis: %d devices from the emulator through the worker, gateway and PostgreSQL in %s: %.0f devices/s\n", devices, took.Round(time.Millisecond), rate)
	fmt.Printf("worker resident memory: peak %d MiB, now %d MiB\n", peak, current)

	faker := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: acmeNS}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: int32(fakerDevices), Seed: 9}, //nolint:gosec // a flag of a bench
		PollInterval: hour, DiscoveryInterval: hour, SyncServiceRef: ref}}
	begin = time.Now()
	if err := env.Client.Create(ctx, faker); err != nil {
		return fmt.Errorf("creating the Faker source: %w", err)
	}
	if err := waitRun(ctx, env, faker, fakerDevices, 10*time.Minute); err != nil {
		return fail(err)
	}
	fakerTook := time.Since(begin)
	fmt.Printf("faker: %d devices pushed, fetched, streamed and stored in %s\n", fakerDevices, fakerTook.Round(time.Millisecond))
	fmt.Printf("RESULT worker_devices_per_s=%.0f worker_peak_rss_mib=%d faker_50k_s=%.1f\n", rate, peak, fakerTook.Seconds())
	return nil
}

// tenants creates the platform and acme with their namespaces.
func tenants(ctx context.Context, env *kubetest.Env) (platformNS, acmeNS string, err error) {
	if platformNS, _, err = env.OnboardTenant(ctx, "platform", true); err != nil {
		return "", "", err
	}
	acmeNS, _, err = env.OnboardTenant(ctx, "acme", false)
	return platformNS, acmeNS, err //nolint:wrapcheck // kubetest names the tenant
}

// waitRun waits until the source's status shows a successful run with want devices.
func waitRun(ctx context.Context, env *kubetest.Env, src *v1alpha1.IntegrationSource, want int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		s := &v1alpha1.IntegrationSource{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), s); err != nil {
			return fmt.Errorf("reading %s: %w", src.Name, err)
		}
		if s.Status.LastRunID != "" {
			if s.Status.LastSyncResult != v1alpha1.SyncResultSuccess || s.Status.DevicesDiscovered != int64(want) {
				return fmt.Errorf("source %s: run %s ended %s with %d devices (want %d): %s", src.Name, s.Status.LastRunID,
					s.Status.LastSyncResult, s.Status.DevicesDiscovered, want, s.Status.LastError)
			}
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("source %s: no finished run within %s", src.Name, limit)
}
