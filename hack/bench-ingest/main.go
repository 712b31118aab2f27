// Command bench-ingest measures the gateway's data path (`make
// bench-ingest`): DEVICES devices of one source streamed by a sync worker
// over real mTLS gRPC (StreamStatus segments in 1 MiB chunks) into the
// gateway binary and its PostgreSQL, end to end; a raw COPY of the same rows
// into an unindexed table in the same database, for scale; one full run with
// 5% of the primary IPs swapped (DHCP churn) on top; and the gateway's peak
// resident memory. It ends with one line:
// RESULT ingest_devices_per_s=<n> copy_ratio=<n> churn_cycle_ms=<n> peak_rss_mib=<n>.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/hack/benchkit"
	"github.com/serviceradar/sync-operator/identity/ca"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/workers/chunk"
)

func main() {
	devices := flag.Int("devices", 50000, "devices in the inventory")
	churn := flag.Int("churn", 5, "percent of devices whose primary IPs are swapped in the churn run")
	segment := flag.Int("segment", chunk.DefaultSegmentDevices, "devices per StreamStatus segment")
	gateway := flag.String("gateway", "bin/gateway", "the gateway binary")
	profile := flag.String("cpuprofile", "", "write the gateway's CPU profile of the churn run to this file")
	ingestProfile := flag.String("ingest-cpuprofile", "", "write the gateway's CPU profile of the first (full import) run to this file")
	flag.Parse()
	if err := run(*devices, *churn, *segment, *gateway, *profile, *ingestProfile); err != nil {
		fmt.Fprintln(os.Stderr, "bench-ingest:", err)
		os.Exit(1)
	}
}

// agentID is the worker of tenant acme.
var agentID = benchkit.AgentID("acme")

func run(n, churnPct, segment int, gatewayBin, profile, ingestProfile string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-ingest-")
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
	if err := populate(ctx, env, n); err != nil {
		return err
	}

	root, err := ca.NewRoot("bench root", 0, nil)
	if err != nil {
		return fmt.Errorf("creating root CA: %w", err)
	}
	var pprofAddr string
	var args []string
	if profile != "" || ingestProfile != "" {
		if pprofAddr, err = gatewayproc.FreeAddr(); err != nil {
			return err
		}
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{Binary: gatewayBin, Dir: dir, Env: env, Root: root, PostgresDSN: dsn, Args: args})
	if err != nil {
		return err
	}
	defer gw.Stop()
	conn, err := benchkit.WorkerConn(root, filepath.Join(dir, "worker"), "acme", agentID, gw.Addr)
	if err != nil {
		return err //nolint:wrapcheck // benchkit names what failed
	}
	defer func() { _ = conn.Close() }()
	c := pb.NewAgentGatewayServiceClient(conn)
	src, err := benchkit.OnlySource(ctx, c, agentID)
	if err != nil {
		return err //nolint:wrapcheck // benchkit names what failed
	}

	inv := benchkit.NewInventory(n)
	stream := func() (time.Duration, error) { return inv.Stream(ctx, c, agentID, src, segment) }
	cpuIn, err := benchkit.ReadCPU(gw)
	if err != nil {
		return err //nolint:wrapcheck // benchkit names what it read
	}
	ingestProfiled := make(chan error, 1)
	if ingestProfile != "" {
		go func() { ingestProfiled <- cpuProfile(pprofAddr, ingestProfile, 3*time.Second) }()
	} else {
		ingestProfiled <- nil
	}
	took, err := stream()
	if err != nil {
		return fmt.Errorf("streaming the inventory: %w", err)
	}
	if err := <-ingestProfiled; err != nil {
		return err
	}
	cpuOut, err := benchkit.ReadCPU(gw)
	if err != nil {
		return err //nolint:wrapcheck // benchkit names what it read
	}
	rate := float64(n) / took.Seconds()
	fmt.Printf("ingest: %d devices in %s over mTLS gRPC into PostgreSQL: %.0f devices/s (CPU: %s)\n",
		n, took.Round(time.Millisecond), rate, cpuOut.Since(cpuIn))

	inv.Churn(churnPct)
	profiled := make(chan error, 1)
	if profile != "" {
		go func() { profiled <- cpuProfile(pprofAddr, profile, 3*time.Second) }()
	} else {
		profiled <- nil
	}
	cpu0, err := benchkit.ReadCPU(gw)
	if err != nil {
		return err //nolint:wrapcheck // benchkit names what it read
	}
	churnTook, err := stream()
	cpu1, cerr := benchkit.ReadCPU(gw)
	if cerr != nil {
		return cerr //nolint:wrapcheck // benchkit names what it read
	}
	if perr := <-profiled; perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("streaming the churn run: %w", err)
	}
	fmt.Printf("churn: a full run with %d%% of primary IPs swapped in %s (CPU: %s)\n",
		churnPct, churnTook.Round(time.Millisecond), cpu1.Since(cpu0))

	count, available, err := counts(ctx, dsn)
	if err != nil {
		return err
	}
	if count != n || available != n {
		return fmt.Errorf("%d devices (%d available) after the runs, want %d", count, available, n)
	}
	copyRate, err := rawCopy(ctx, dsn, inv, n, src.IntegrationSourceUID)
	if err != nil {
		return err
	}
	fmt.Printf("raw COPY of the same %d rows into an unindexed table: %.0f rows/s\n", n, copyRate)
	peak, current, err := gw.Memory()
	if err != nil {
		return err
	}
	fmt.Printf("gateway resident memory: peak %d MiB, now %d MiB\n", peak, current)
	fmt.Printf("RESULT ingest_devices_per_s=%.0f copy_ratio=%.3f churn_cycle_ms=%d peak_rss_mib=%d\n", rate, rate/copyRate, churnTook.Milliseconds(), peak)
	return nil
}

// cpuProfile saves the gateway's CPU profile over the next d.
func cpuProfile(addr, path string, d time.Duration) error {
	res, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds()))) //nolint:noctx // bounded by seconds
	if err != nil {
		return fmt.Errorf("profiling the gateway: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	f, err := os.Create(path) //nolint:gosec // a path the user passed
	if err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	defer func() { _ = f.Close() }()
	if _, err := io.Copy(f, res.Body); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	return nil
}

// populate creates the platform and its SyncService, and tenant acme with
// one Faker source served by it.
func populate(ctx context.Context, env *kubetest.Env, n int) error {
	platformNS, _, err := env.OnboardTenant(ctx, "platform", true)
	if err != nil {
		return err //nolint:wrapcheck // kubetest names the tenant
	}
	acmeNS, _, err := env.OnboardTenant(ctx, "acme", false)
	if err != nil {
		return err //nolint:wrapcheck // kubetest names the tenant
	}
	for _, o := range []client.Object{
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "platform-sync", Namespace: platformNS}, Spec: v1alpha1.SyncServiceSpec{Platform: true}},
		&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: acmeNS}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: int32(n)}, //nolint:gosec // a flag of a bench
			SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: platformNS, Name: "platform-sync"}}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	return nil
}

func counts(ctx context.Context, dsn string) (total, available int, err error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, 0, fmt.Errorf("connecting: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	err = conn.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE is_available) FROM tenant_acme.ocsf_devices").Scan(&total, &available)
	if err != nil {
		return 0, 0, fmt.Errorf("counting devices: %w", err)
	}
	return total, available, nil
}

// rawCopy is the floor: the same rows COPYed into a table without indexes.
func rawCopy(ctx context.Context, dsn string, inv *benchkit.Inventory, n int, sourceUID string) (float64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("connecting: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, `CREATE TABLE bench_copy (uid text, ip text, mac text, hostname text, metadata jsonb, seen timestamptz)`); err != nil {
		return 0, fmt.Errorf("creating the copy table: %w", err)
	}
	begin := time.Now()
	rows := make([][]any, 0, n)
	for i := range n {
		d := inv.Device(i, sourceUID)
		meta, _ := json.Marshal(d.Metadata)
		rows = append(rows, []any{fmt.Sprintf("sr:%d", i), d.IP, d.MAC, d.Hostname, string(meta), time.Now()})
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"bench_copy"}, []string{"uid", "ip", "mac", "hostname", "metadata", "seen"}, pgx.CopyFromRows(rows)); err != nil {
		return 0, fmt.Errorf("copying: %w", err)
	}
	return float64(n) / time.Since(begin).Seconds(), nil
}
