package app_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	gwapp "github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workers/app"
	"github.com/serviceradar/sync-operator/workers/runner"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestWorkerSyncsItsTenantsFakerSourceThroughTheGateway(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)

	ns := map[string]string{}
	for _, slug := range []string{"platform", "acme"} {
		if ns[slug], _, err = env.OnboardTenant(ctx, slug, slug == "platform"); err != nil {
			t.Fatal(err)
		}
	}
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "platform-sync", Namespace: ns["platform"]}, Spec: v1alpha1.SyncServiceSpec{Platform: true}}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns["acme"]}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: 2000, Seed: 3},
		NetworkBlacklist: []string{"172.16.0.0/24"},
		SyncServiceRef:   v1alpha1.SyncServiceReference{Namespace: ns["platform"], Name: "platform-sync"}}}
	for _, o := range []client.Object{ss, src} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// The gateway, with its shipped RBAC and the device store.
	root, _ := ca.NewRoot("root", 0, nil)
	dir := t.TempDir()
	gw, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw"), time.Hour)
	gwFiles := pkitest.Write(t, filepath.Join(dir, "gw"), gw, root.Cert)
	user, err := env.UserWithRoles(ctx, "gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(ctx)
	gready, gdone := make(chan string, 1), make(chan error, 1)
	go func() {
		gdone <- gwapp.Run(gctx, gwapp.Config{Kube: user.Config(), Listen: "127.0.0.1:0", CertFile: gwFiles.Cert, KeyFile: gwFiles.Key, CAFile: gwFiles.CA,
			GatewayID: "gw", PostgresDSN: dsn, DeviceCacheEntries: store.DefaultCacheEntries, Log: testr.New(t).WithName("gateway"), Ready: func(a string) { gready <- a }})
	}()
	defer func() {
		gcancel()
		if err := <-gdone; err != nil {
			t.Error(err)
		}
	}()
	var addr string
	select {
	case addr = <-gready:
	case err := <-gdone:
		t.Fatal(err)
	}

	// The worker, from a bootstrap file as the manager renders it.
	svid, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/platform-sync-acme"), time.Hour)
	files := pkitest.Write(t, filepath.Join(dir, "worker"), svid, root.Cert)
	boot := bootstrap.Config{GatewayAddress: addr, ComponentID: "platform-sync-acme", Partition: "default", TenantSlug: "acme",
		Identity: bootstrap.Identity{Source: bootstrap.IdentityFiles, CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA}}
	raw, _ := boot.JSON()
	bootFile := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(bootFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	metricsAddr, err := gatewayproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	metric := func(name string) string {
		res, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer func() { _ = res.Body.Close() }()
		body, _ := io.ReadAll(res.Body)
		for line := range strings.SplitSeq(string(body), "\n") {
			if strings.HasPrefix(line, name) {
				return strings.TrimSpace(line[strings.LastIndex(line, " "):])
			}
		}
		return ""
	}
	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() {
		// Small segments: several are on their way at once before the final one.
		wdone <- app.Run(wctx, app.Config{BootstrapFile: bootFile, Version: "test", Log: testr.New(t).WithName("worker"), Metrics: metricsAddr,
			Runner: runner.Options{SegmentDevices: 300, ChunkBytes: 16 << 10}})
	}()

	devices, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer devices.Close()
	count := func(where string) int {
		var n int
		_ = devices.Pool().QueryRow(ctx, "SELECT count(*) FROM tenant_acme.ocsf_devices WHERE "+where).Scan(&n)
		return n
	}
	getSrc := func() *v1alpha1.IntegrationSource {
		s := &v1alpha1.IntegrationSource{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// 2000 devices minus the blacklisted 172.16.0.0/24 (172.16.0.1-255: the first 255 of the shuffled IPs).
	test.Eventually(t, "the first run's devices in the tenant's schema", 2*time.Minute, func() bool {
		s := getSrc()
		return s.Status.LastRunID != "" && s.Status.LastSyncResult == v1alpha1.SyncResultSuccess
	})
	first := count("true")
	if first != 2000-255 || count("ip LIKE '172.16.0.%'") != 0 {
		t.Fatalf("%d devices after the first run (blacklisted: %d), want %d", first, count("ip LIKE '172.16.0.%'"), 2000-255)
	}
	if s := getSrc(); s.Status.DevicesDiscovered != int64(first) {
		t.Fatalf("status devicesDiscovered %d, want %d", s.Status.DevicesDiscovered, first)
	}
	if s := (&v1alpha1.SyncService{}); env.Client.Get(ctx, client.ObjectKeyFromObject(ss), s) != nil || s.Status.LastHeartbeatAt == nil || s.Status.Version != "test" {
		t.Fatalf("SyncService heartbeat not recorded: %+v", s.Status)
	}

	// An edit is pushed and applied without a restart: the loop restarts with 2500 devices.
	runBefore := getSrc().Status.LastRunID
	if err := env.Client.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"faker":{"devices":2500}}}`))); err != nil {
		t.Fatal(err)
	}
	test.Eventually(t, "a run with the edited source", 2*time.Minute, func() bool {
		s := getSrc()
		return s.Status.LastRunID != runBefore && s.Status.DevicesDiscovered > int64(first)
	})
	// Per-source metrics, and pausing and resuming without a restart. The
	// gateway writes the run's status while the worker's last call is being
	// answered, so the worker may count the run's devices just after.
	test.Eventually(t, "sync_devices_total counting the run", 30*time.Second, func() bool {
		got := metric("sync_devices_total{")
		return got != "" && got != "0"
	})
	for _, want := range []string{"sync_run_duration_seconds_count{", "sync_pages_total{", "sync_last_success_timestamp_seconds{"} {
		if metric(want) == "" {
			t.Fatalf("metric %s missing", want)
		}
	}
	for _, tc := range []struct{ paused, active string }{{"true", "0"}, {"false", "1"}} {
		if err := env.Client.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":`+tc.paused+`}}`))); err != nil {
			t.Fatal(err)
		}
		test.Eventually(t, "paused="+tc.paused+" applied", 2*time.Minute, func() bool { return metric("sync_sources_active") == tc.active })
	}
	wcancel()
	select {
	case err := <-wdone:
		if err != nil {
			t.Fatalf("worker stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop on shutdown")
	}
}
