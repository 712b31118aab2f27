// Command bench-upstream measures a whole upstream run in one call (`make
// bench-upstream`): DEVICES devices in ServiceRadar's array form (no
// integration_source_uid, per-device sync_meta, the legacy
// "is_available": false, chunks of about 3 MiB), sent in ONE StreamStatus
// call over real mTLS gRPC into the gateway binary and its PostgreSQL, as an
// upstream agent's sync runtime sends an inventory. The gateway applies it
// window by window; the figure that matters is its peak resident memory
// during the call (target: at most 300 MiB at 1,000,000 devices). It ends
// with one line:
// RESULT upstream_devices=<n> upstream_devices_per_s=<n> chunks=<n> peak_rss_mib=<n>.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/hack/benchkit"
	"github.com/serviceradar/sync-operator/identity/ca"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/wire/results"
)

func main() {
	devices := flag.Int("devices", 1000000, "devices in the one call")
	chunkBytes := flag.Int("chunk-bytes", 3<<20, "bytes of results per chunk (upstream sends about 3 MiB)")
	gateway := flag.String("gateway", "bin/gateway", "the gateway binary")
	flag.Parse()
	// The kube-apiserver harness uses controller-runtime; its logs are not the figure.
	ctrl.SetLogger(logr.Discard())
	if err := run(*devices, *chunkBytes, *gateway); err != nil {
		fmt.Fprintln(os.Stderr, "bench-upstream:", err)
		os.Exit(1)
	}
}

const agentID = "platform-sync-acme"

// device is device i as upstream's agent sync runtime sends it.
func device(i int, syncServiceID, runID string, total int) results.DeviceUpdate {
	no := false
	ip := fmt.Sprintf("10.%d.%d.%d", 64+i>>16&63, i>>8&255, i&255)
	return results.DeviceUpdate{DeviceID: "default:" + ip, IP: ip, MAC: fmt.Sprintf("00:1b:%02x:%02x:%02x:%02x", i>>24&255, i>>16&255, i>>8&255, i&255),
		Hostname: fmt.Sprintf("dev-%07d", i), Source: "faker", AgentID: "agent-upstream", GatewayID: "gw", ServiceType: "sync", ServiceID: "sync",
		Timestamp: time.Now().UTC().Format(time.RFC3339), IsAvailable: &no, Confidence: 50,
		Metadata: map[string]string{"faker_device_id": fmt.Sprintf("fk-%d", i), "operating_system": "Linux", "manufacturer": "Acme Networks", "site": "hq"},
		SyncMeta: &results.DeviceMeta{SyncServiceID: syncServiceID, SyncRunID: runID, TotalDevices: total}}
}

func run(n, chunkBytes int, gatewayBin string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-upstream-")
	if err != nil {
		return fmt.Errorf("creating temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env, err := kubetest.Start()
	if err != nil {
		return err //nolint:wrapcheck // kubetest says what failed
	}
	defer func() { _ = env.Stop() }()
	defer func() { _ = pgtest.Stop() }()
	dsn, drop, err := pgtest.CreateDatabase(ctx)
	if err != nil {
		return err //nolint:wrapcheck // pgtest says what failed
	}
	defer func() { _ = drop() }()
	if err := populate(ctx, env, n); err != nil {
		return err
	}
	root, err := ca.NewRoot("bench root", 0, nil)
	if err != nil {
		return fmt.Errorf("creating root CA: %w", err)
	}
	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{Binary: gatewayBin, Dir: dir, Env: env, Root: root, PostgresDSN: dsn})
	if err != nil {
		return err //nolint:wrapcheck // gatewayproc says what failed
	}
	defer gw.Stop()
	conn, err := benchkit.WorkerConn(root, filepath.Join(dir, "worker"), "acme", agentID, gw.Addr, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(8<<20)))
	if err != nil {
		return err //nolint:wrapcheck // benchkit names what failed
	}
	defer func() { _ = conn.Close() }()
	c := pb.NewAgentGatewayServiceClient(conn)
	src, err := benchkit.OnlySource(ctx, c, agentID)
	if err != nil {
		return err //nolint:wrapcheck // benchkit names what failed
	}
	// The chunks' boundaries, from the encoded size of each device: the
	// call's total_chunks is fixed before its first chunk is sent.
	sizes := make([]int32, n)
	var bounds []int // index of each chunk's first device
	for i, acc := 0, chunkBytes; i < n; i++ {
		raw, err := json.Marshal(device(i, src.SyncServiceID, "bench-run", n))
		if err != nil {
			return fmt.Errorf("encoding device %d: %w", i, err)
		}
		sizes[i] = int32(len(raw) + 1) //nolint:gosec // a device's JSON is small
		if acc+int(sizes[i]) > chunkBytes {
			bounds, acc = append(bounds, i), 0
		}
		acc += int(sizes[i])
	}
	bounds = append(bounds, n)
	chunks := len(bounds) - 1
	fmt.Printf("one call: %d devices in %d chunks of at most %d bytes\n", n, chunks, chunkBytes)

	begin := time.Now()
	st, err := c.StreamStatus(ctx)
	if err != nil {
		return fmt.Errorf("opening the call: %w", err)
	}
	for k := range chunks {
		devs := make([]results.DeviceUpdate, 0, bounds[k+1]-bounds[k])
		for i := bounds[k]; i < bounds[k+1]; i++ {
			d := device(i, src.SyncServiceID, "bench-run", n)
			d.SyncMeta.ChunkIndex, d.SyncMeta.TotalChunks, d.SyncMeta.IsFinal = k, chunks, i == n-1
			devs = append(devs, d)
		}
		raw, err := json.Marshal(devs)
		if err != nil {
			return fmt.Errorf("encoding chunk %d: %w", k, err)
		}
		err = st.Send(&pb.GatewayStatusChunk{AgentId: agentID, ChunkIndex: int32(k), TotalChunks: int32(chunks), IsFinal: k == chunks-1, //nolint:gosec // bounded by n
			Services: []*pb.GatewayServiceStatus{{ServiceName: results.ServiceName, ServiceType: results.ServiceType, Source: results.Source, Message: raw}}})
		if err != nil {
			break // the gateway answered early; CloseAndRecv has it
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		return fmt.Errorf("the call: %w", err)
	}
	took := time.Since(begin)
	rate := float64(n) / took.Seconds()
	fmt.Printf("upstream: %d devices in one call of %d chunks in %s: %.0f devices/s\n", n, chunks, took.Round(time.Millisecond), rate)
	count, available, err := counts(ctx, dsn)
	if err != nil {
		return err
	}
	if count != n || available != n {
		return fmt.Errorf("%d devices (%d available) after the call, want %d", count, available, n)
	}
	peak, current, err := gw.Memory()
	if err != nil {
		return err //nolint:wrapcheck // gatewayproc names what it read
	}
	fmt.Printf("gateway resident memory: peak %d MiB, now %d MiB\n", peak, current)
	fmt.Printf("RESULT upstream_devices=%d upstream_devices_per_s=%.0f chunks=%d peak_rss_mib=%d\n", n, rate, chunks, peak)
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
			Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: int32(min(n, 1000000))}, //nolint:gosec // a flag of a bench
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
