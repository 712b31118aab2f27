// Package gatewaydrain_test stops the gateway binary as the kubelet does
// (SIGTERM, then SIGKILL after the pod's terminationGracePeriodSeconds) while
// a worker holds a ControlStream and has a StreamStatus call in flight, over
// mTLS, with PostgreSQL: the gateway must let the call finish and store its
// devices, end the ControlStream at once so that the worker reconnects to
// another replica, refuse new connections (which is also what fails its TCP
// readiness probe) and exit 0 within its --shutdown-grace.
package gatewaydrain_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/results"
)

// gatewayBinary is the gateway built for this test process.
var gatewayBinary string

func TestMain(m *testing.M) { os.Exit(gatewayproc.Main(m, &gatewayBinary)) }

// The worker: the platform SyncService's worker for tenant acme.
const (
	agentID = "platform-sync-acme"
	// half is how many devices each chunk of the call in flight carries.
	half = 500
	// oldCut is how long the gateway used to give calls in flight before it
	// closed every connection, whatever its grace; the call in flight here
	// takes longer than that to send its last chunk.
	oldCut = 5 * time.Second
)

// message is one results message of the source's run (one segment, the
// whole run), with devices [from, from+n).
func message(t *testing.T, sourceUID, run string, from, n int) []byte {
	t.Helper()
	m := results.Message{Meta: &results.Meta{IntegrationSourceUID: sourceUID, SyncRunID: run,
		RunComplete: true, FullFetch: true, TotalDevices: 2 * half}}
	yes := true
	for i := from; i < from+n; i++ {
		m.Devices = append(m.Devices, results.DeviceUpdate{IP: fmt.Sprintf("10.42.%d.%d", i/250, i%250+1),
			Hostname: fmt.Sprintf("drain-%04d", i), IsAvailable: &yes})
	}
	raw, err := results.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func chunk(index, total int, final bool, msg []byte) *pb.GatewayStatusChunk {
	return &pb.GatewayStatusChunk{AgentId: agentID, ChunkIndex: int32(index), TotalChunks: int32(total), IsFinal: final, //nolint:gosec // small numbers
		Services: []*pb.GatewayServiceStatus{{ServiceName: results.ServiceName, ServiceType: results.ServiceType, Source: results.Source, Message: msg}}}
}

// metric reads one unlabelled sample from a Prometheus endpoint (-1 when
// it is not there).
func metric(addr, name string) float64 {
	res, err := http.Get("http://" + addr + "/metrics") //nolint:noctx // a local test endpoint
	if err != nil {
		return -1
	}
	defer func() { _ = res.Body.Close() }()
	body, _ := io.ReadAll(res.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// world is a gateway process with its API server, database and worker:
// the platform SyncService's worker of tenant acme, whose one source is a
// Faker source.
type world struct {
	env     *kubetest.Env
	gw      *gatewayproc.Process
	metrics string
	db      *pgxpool.Pool
	src     *v1alpha1.IntegrationSource
	creds   credentials.TransportCredentials
	// c is the worker's client, on one connection as a worker holds it.
	c pb.AgentGatewayServiceClient
}

// newWorld starts an API server, the gateway binary with the shutdown
// grace and its metrics on a port of their own, and connects the worker.
func newWorld(ctx context.Context, t *testing.T, grace string) *world {
	t.Helper()
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	w := &world{env: env}
	platformNS, _, err := env.OnboardTenant(ctx, "platform", true)
	if err != nil {
		t.Fatal(err)
	}
	acmeNS, _, err := env.OnboardTenant(ctx, "acme", false)
	if err != nil {
		t.Fatal(err)
	}
	w.src = &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "inventory", Namespace: acmeNS}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: 2 * half}, Partition: "default",
		SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: platformNS, Name: "platform-sync"}}}
	for _, o := range []client.Object{
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "platform-sync", Namespace: platformNS},
			Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeSaaS, Platform: true, Partition: "default"}},
		w.src,
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	dsn := pgtest.NewDatabase(t)
	if w.db, err = pgxpool.New(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.db.Close)

	root, _ := ca.NewRoot("root", 0, nil)
	dir := t.TempDir()
	cert, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/"+agentID), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	classifier, _ := identity.NewClassifier("", "")
	w.creds = credentials.NewTLS(mtls.ClientConfig(mtls.Verifier{Classifier: classifier,
		Source: pkitest.Source(t, filepath.Join(dir, "worker"), cert, root.Cert)}, mtls.ServerExpectation{}))
	if w.metrics, err = gatewayproc.FreeAddr(); err != nil {
		t.Fatal(err)
	}
	w.gw, err = gatewayproc.Start(ctx, gatewayproc.Options{Binary: gatewayBinary, Dir: dir, Env: env, Root: root,
		PostgresDSN: dsn, Args: []string{"--shutdown-grace=" + grace, "--metrics-bind-address=" + w.metrics}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.gw.Stop)
	w.c = w.client(t)
	return w
}

// client connects the worker to the gateway anew.
func (w *world) client(t *testing.T) pb.AgentGatewayServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(w.gw.Addr, grpc.WithTransportCredentials(w.creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewAgentGatewayServiceClient(conn)
}

// devices counts acme's stored devices.
func (w *world) devices(ctx context.Context, t *testing.T) int {
	t.Helper()
	var n int
	if err := w.db.QueryRow(ctx, "SELECT count(*) FROM tenant_acme.ocsf_devices").Scan(&n); err != nil && !strings.Contains(err.Error(), "does not exist") {
		t.Fatal(err)
	}
	return n
}

// control opens the worker's ControlStream and reads its first config.
func (w *world) control(ctx context.Context, t *testing.T) pb.AgentGatewayService_ControlStreamClient {
	t.Helper()
	cs, err := w.c.ControlStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: agentID, Partition: "default"}}}); err != nil {
		t.Fatal(err)
	}
	first, err := cs.Recv()
	if err != nil || !strings.Contains(string(first.GetConfig().GetConfigJson()), string(w.src.UID)) {
		t.Fatalf("the worker's first config on its ControlStream: %v, %v", first, err)
	}
	return cs
}

// inFlight opens a StreamStatus call of two chunks of run, sends the first
// (the devices from `from` on) and waits until the gateway has read it.
func (w *world) inFlight(ctx context.Context, t *testing.T, run string, from int) pb.AgentGatewayService_StreamStatusClient {
	t.Helper()
	st, err := w.c.StreamStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := metric(w.metrics, "sync_gateway_status_chunks_total")
	if err := st.Send(chunk(0, 2, false, message(t, string(w.src.UID), run, from, half))); err != nil {
		t.Fatal(err)
	}
	test.Eventually(t, "the gateway to read the call's first chunk", time.Minute, func() bool {
		return metric(w.metrics, "sync_gateway_status_chunks_total") > before
	})
	return st
}

// TestGatewayDrainsOnSIGTERM runs the gateway binary with a worker that
// holds a ControlStream and has a StreamStatus call in flight (its first
// chunk read, its last not yet sent) when the gateway gets SIGTERM.
func TestGatewayDrainsOnSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("the call in flight finishes, the ControlStream ends Unavailable, new connections are refused, exit 0", func(t *testing.T) {
		w := newWorld(ctx, t, "2m")
		cs := w.control(ctx, t)
		run := uuid.NewString()
		st := w.inFlight(ctx, t, run, 0)

		if err := w.gw.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// The ControlStream ends while the call is still in flight, that is
		// long before the grace: the worker reconnects elsewhere at once.
		if _, err := cs.Recv(); status.Code(err) != codes.Unavailable {
			t.Fatalf("the ControlStream after SIGTERM: %v, want Unavailable", err)
		}
		// The port refuses connections: the kubelet's TCP readiness probe
		// fails and the Service stops routing here.
		test.Eventually(t, "the gRPC port to refuse connections", time.Minute, func() bool {
			conn, err := net.DialTimeout("tcp", w.gw.Addr, 5*time.Second)
			if err == nil {
				_ = conn.Close()
				return false
			}
			return errors.Is(err, syscall.ECONNREFUSED)
		})
		// A new call is not served here (its client finds no connection).
		if _, err := w.client(t).Hello(ctx, &pb.AgentHelloRequest{AgentId: agentID}); status.Code(err) != codes.Unavailable {
			t.Fatalf("a new call while draining: %v, want Unavailable", err)
		}
		// The call in flight takes its time (longer than the gateway used to
		// wait) and then sends its last chunk: it is applied.
		time.Sleep(oldCut + 2*time.Second)
		if err := st.Send(chunk(1, 2, true, message(t, string(w.src.UID), run, half, half))); err != nil {
			t.Fatalf("sending the last chunk while the gateway drains: %v", err)
		}
		resp, err := st.CloseAndRecv()
		if err != nil || !resp.GetReceived() {
			t.Fatalf("the call in flight when the gateway drained: %v, %v", resp, err)
		}
		if n := w.devices(ctx, t); n != 2*half {
			t.Fatalf("%d devices stored, want %d", n, 2*half)
		}
		if code, err := w.gw.Wait(); err != nil || code != 0 {
			t.Fatalf("the gateway exited with %d (%v), want 0", code, err)
		}
	})

	t.Run("the grace bounds the drain: a call still in flight is cut off, nothing of it is stored, exit 0", func(t *testing.T) {
		w := newWorld(ctx, t, "2s")
		st := w.inFlight(ctx, t, uuid.NewString(), 0)
		if err := w.gw.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// The worker never sends its last chunk: the gateway ends the call
		// when its grace runs out, and exits.
		if code, err := w.gw.Wait(); err != nil || code != 0 {
			t.Fatalf("the gateway exited with %d (%v), want 0", code, err)
		}
		if _, err := st.CloseAndRecv(); status.Code(err) != codes.Unavailable {
			t.Fatalf("the call cut off by the grace: %v, want Unavailable", err)
		}
		if n := w.devices(ctx, t); n != 0 {
			t.Fatalf("%d devices stored of a call that was cut off, want 0", n)
		}
	})
}
