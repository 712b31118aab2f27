package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

func TestGatewayProcessServesHealthReflectionAndMetrics(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	root, _ := ca.NewRoot("root", 0, nil)
	gw, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw-0"), time.Hour)
	dir := t.TempDir()
	gwFiles := pkitest.Write(t, filepath.Join(dir, "gw"), gw, root.Cert)

	// The gateway runs with exactly the RBAC it ships with.
	kube, err := env.UserWithRoles(context.Background(), "gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := freeAddr(t)
	dsn := pgtest.NewDatabase(t)
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{Kube: kube.Config(), Listen: "127.0.0.1:0", Metrics: metricsAddr, PostgresDSN: dsn,
			CertFile: gwFiles.Cert, KeyFile: gwFiles.Key, CAFile: gwFiles.CA, GatewayID: "gw-0", Log: logr.Discard(),
			Ready: func(addr string) { ready <- addr }})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("gateway did not start")
	}

	client, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/w"), time.Hour)
	src := pkitest.Source(t, filepath.Join(dir, "client"), client, root.Cert)
	classifier, _ := identity.NewClassifier("", "")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcancel()

	h, err := healthpb.NewHealthClient(conn).Check(rctx, &healthpb.HealthCheckRequest{Service: "monitoring.AgentGatewayService"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %v %v", h, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range resp.GetListServicesResponse().GetService() {
		found = found || s.Name == "monitoring.AgentGatewayService"
	}
	if !found {
		t.Fatalf("reflection lists %v", resp.GetListServicesResponse().GetService())
	}
	// No tenant or SyncService exists: the worker is refused, and the refusal is counted.
	if _, err := pb.NewAgentGatewayServiceClient(conn).Hello(rctx, &pb.AgentHelloRequest{AgentId: "w"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Hello: %v", err)
	}
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="PermissionDenied",grpc_method="Hello",grpc_service="monitoring.AgentGatewayService",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_bucket{grpc_method="Hello"`,
		"sync_gateway_device_cache_hits_total 0",
		"sync_gateway_device_cache_entries 0",
		// Config.DeviceCacheEntries is not set: 0 disables the cache, as
		// --device-cache-entries=0 and store.WithCacheEntries(0) do.
		"sync_gateway_device_cache_capacity 0",
		"sync_gateway_control_streams 0",
		"sync_gateway_config_pushes_total 0",
		`sync_gateway_config_acks_total{result="current"} 0`,
		`sync_gateway_config_acks_total{result="stale"} 0`,
		"sync_gateway_heartbeat_writes_total 0",
		`sync_gateway_retention_pruned_rows_total{table="applied_segments"} 0`,
		`sync_gateway_retention_rounds_total{result="skipped"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gateway stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not stop")
	}
}
