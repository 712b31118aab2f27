// Command bench-gateway measures the gateway's config plane (`make
// bench-gateway`) on a real API server: TENANTS tenants, each with three
// IntegrationSources (Armis and NetBox with credentials Secrets, and Faker)
// served by the platform SyncService, and the gateway binary as its own
// process with the RBAC it ships with, reached over real mTLS on loopback by
// one SVID per tenant worker. It prints GetConfig throughput and latency for
// not_modified and full answers over reused connections, the latency from a
// source edit to the config pushed on that tenant's ControlStream with every
// tenant's stream open, and the gateway's peak resident memory. It ends with
// one line: RESULT getconfig_rps=<n> getconfig_p99_ms=<n> push_p99_ms=<n> rss_mib=<n>.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/hack/benchkit"
	"github.com/serviceradar/sync-operator/identity/ca"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/wire/bundle"
)

type options struct {
	tenants     int
	gateway     string
	duration    time.Duration
	conns       int
	concurrency int
	edits       int
	pprof       string
}

func main() {
	var o options
	flag.IntVar(&o.tenants, "tenants", 1000, "number of tenants (three sources each)")
	flag.StringVar(&o.gateway, "gateway", "bin/gateway", "the gateway binary")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long each throughput phase runs")
	flag.IntVar(&o.conns, "conns", 16, "connections (distinct tenant workers) in the throughput phases")
	flag.IntVar(&o.concurrency, "concurrency", 8, "calls in flight per connection")
	flag.IntVar(&o.edits, "edits", 100, "source edits whose push latency is measured")
	flag.StringVar(&o.pprof, "gateway-pprof", "", "serve the gateway's net/http/pprof here during the run, e.g. 127.0.0.1:6060")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		os.Exit(1)
	}
}

// worker is one tenant's sync worker connection.
type worker struct {
	benchkit.Caller
	slug, ns string
	conn     *grpc.ClientConn
}

func run(o options) error {
	ctx := context.Background()
	env, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	dir, err := os.MkdirTemp("", "bench-gateway-")
	if err != nil {
		return fmt.Errorf("creating temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()

	begin := time.Now()
	tenantNS, err := populate(ctx, env, o.tenants)
	if err != nil {
		return err
	}
	fmt.Printf("created %d tenants x 3 sources in %s\n", o.tenants, time.Since(begin).Round(time.Millisecond))

	root, err := ca.NewRoot("bench root", 0, nil)
	if err != nil {
		return fmt.Errorf("creating root CA: %w", err)
	}
	var args []string
	if o.pprof != "" {
		args = append(args, "--pprof-bind-address="+o.pprof)
	}
	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{Binary: o.gateway, Dir: dir, Env: env, Root: root, Args: args})
	if err != nil {
		return err
	}
	defer gw.Stop()
	addr := gw.Addr

	workers, err := dial(dir, root, addr, tenantNS)
	if err != nil {
		return err
	}
	defer func() {
		for _, w := range workers {
			_ = w.conn.Close()
		}
	}()
	// Every worker fetches its config once, as workers do on start.
	begin = time.Now()
	versions := make([]string, len(workers))
	if err := benchkit.Parallel(len(workers), 32, func(i int) error {
		resp, err := workers[i].Client.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: workers[i].AgentID})
		if err != nil {
			return fmt.Errorf("first GetConfig of %s: %w", workers[i].slug, err)
		}
		var b bundle.Sync
		if err := json.Unmarshal(resp.ConfigJson, &b); err != nil || len(b.Sources) != 3 {
			return fmt.Errorf("bundle of %s has %d sources: %w", workers[i].slug, len(b.Sources), err)
		}
		versions[i] = resp.ConfigVersion
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf("first GetConfig of %d workers in %s\n", len(workers), time.Since(begin).Round(time.Millisecond))

	nmRPS, nmP99, nmP50, err := throughput(ctx, o, workers, versions)
	if err != nil {
		return err
	}
	fmt.Printf("GetConfig not_modified: %.0f req/s, p50 %.2f ms, p99 %.2f ms (%d connections x %d in flight)\n", nmRPS, nmP50, nmP99, o.conns, o.concurrency)
	fullRPS, fullP99, fullP50, err := throughput(ctx, o, workers, nil)
	if err != nil {
		return err
	}
	fmt.Printf("GetConfig full bundle:  %.0f req/s, p50 %.2f ms, p99 %.2f ms\n", fullRPS, fullP50, fullP99)

	p50, p99, stray, err := pushes(ctx, env, o, workers)
	if err != nil {
		return err
	}
	fmt.Printf("push after a source edit or Secret rotation (alternating), %d streams open, %d edits: p50 %.1f ms, p99 %.1f ms; pushes to other tenants: %d\n", len(workers), o.edits, p50, p99, stray)
	peak, current, err := gw.Memory()
	if err != nil {
		return err
	}
	fmt.Printf("gateway resident memory: peak %d MiB, now %d MiB\n", peak, current)
	fmt.Printf("RESULT getconfig_rps=%.0f getconfig_p99_ms=%.2f push_p99_ms=%.1f rss_mib=%d\n", nmRPS, nmP99, p99, peak)
	return nil
}

// populate creates the platform, its SyncService, and the tenants with their
// namespaces, Secrets and sources; it returns the tenants' namespaces.
func populate(ctx context.Context, env *kubetest.Env, n int) ([]string, error) {
	c := env.Client
	platformNS, _, err := env.OnboardTenant(ctx, "platform", true)
	if err != nil {
		return nil, err //nolint:wrapcheck // kubetest names the tenant
	}
	ref := v1alpha1.SyncServiceReference{Namespace: platformNS, Name: "platform-sync"}
	if err := c.Create(ctx, &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "platform-sync", Namespace: platformNS}, Spec: v1alpha1.SyncServiceSpec{Platform: true}}); err != nil {
		return nil, fmt.Errorf("creating the platform SyncService: %w", err)
	}
	nss := make([]string, n)
	err = benchkit.Parallel(n, 16, func(i int) error {
		slug := fmt.Sprintf("t%04d", i)
		ns, _, err := env.OnboardTenant(ctx, slug, false)
		if err != nil {
			return err //nolint:wrapcheck // kubetest names the tenant
		}
		nss[i] = ns
		for _, o := range []client.Object{
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "armis", Namespace: ns}, Data: map[string][]byte{"secret_key": []byte(slug + "-armis-secret")}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "netbox", Namespace: ns}, Data: map[string][]byte{"api_token": []byte(slug + "-netbox-token")}},
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "armis", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
				Type: v1alpha1.IntegrationArmis, Endpoint: "https://" + slug + ".armis.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "armis"},
				SyncServiceRef: ref, Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}, {Label: "ot", Query: "in:devices type:PLC"}}}},
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "netbox", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
				Type: v1alpha1.IntegrationNetBox, Endpoint: "https://" + slug + ".netbox.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"},
				SyncServiceRef: ref}},
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "faker", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
				Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: 1000, Seed: int64(i)}, SyncServiceRef: ref}},
		} {
			if err := c.Create(ctx, o); err != nil {
				return fmt.Errorf("creating %T %s/%s: %w", o, ns, o.GetName(), err)
			}
		}
		return nil
	})
	return nss, err
}

// dial opens one mTLS connection per tenant worker, each with its own SVID.
func dial(dir string, root *ca.Authority, addr string, nss []string) ([]*worker, error) {
	workers := make([]*worker, len(nss))
	err := benchkit.Parallel(len(nss), 8, func(i int) error {
		slug := fmt.Sprintf("t%04d", i)
		agentID := benchkit.AgentID(slug)
		conn, err := benchkit.WorkerConn(root, filepath.Join(dir, slug), slug, agentID, addr)
		if err != nil {
			return err //nolint:wrapcheck // benchkit names the tenant
		}
		workers[i] = &worker{Caller: benchkit.Caller{AgentID: agentID, Client: pb.NewAgentGatewayServiceClient(conn)}, slug: slug, ns: nss[i], conn: conn}
		return nil
	})
	return workers, err
}

// throughput runs GetConfig on o.conns connections with o.concurrency calls
// in flight each, for o.duration: with each worker's current version
// (not_modified) when versions is set, else asking for the full bundle.
func throughput(ctx context.Context, o options, workers []*worker, versions []string) (rps, p99, p50 float64, err error) {
	callers := make([]benchkit.Caller, len(workers))
	for i, w := range workers {
		callers[i] = w.Caller
	}
	return benchkit.Throughput(ctx, benchkit.Load{Conns: o.conns, Concurrency: o.concurrency, Duration: o.duration}, callers, versions) //nolint:wrapcheck // names what failed
}

// pushes opens every worker's ControlStream, then edits one random tenant's
// Armis source at a time and measures until that tenant's stream delivers a
// config with the new endpoint. stray counts configs pushed to tenants whose
// sources did not change.
func pushes(ctx context.Context, env *kubetest.Env, o options, workers []*worker) (p50, p99 float64, stray int64, err error) {
	type arrival struct {
		endpoint, secret string
		at               time.Time
	}
	arrivals := make([]chan arrival, len(workers))
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var opened sync.WaitGroup
	var openErr atomic.Value
	for i, w := range workers {
		arrivals[i] = make(chan arrival, 16)
		opened.Add(1)
		go func() {
			st, err := w.Client.ControlStream(sctx)
			if err == nil {
				err = st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: w.AgentID}}})
			}
			first := true
			for err == nil {
				var msg *pb.ControlStreamResponse
				if msg, err = st.Recv(); err != nil {
					break
				}
				at := time.Now()
				var b bundle.Sync
				if err = json.Unmarshal(msg.GetConfig().GetConfigJson(), &b); err != nil {
					break
				}
				_ = st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{ConfigVersion: msg.GetConfig().GetConfigVersion()}}})
				if first {
					first = false
					opened.Done()
					continue
				}
				armis := b.Sources[w.ns+"/armis"]
				arrivals[i] <- arrival{endpoint: armis.Endpoint, secret: armis.Credentials["secret_key"], at: at}
			}
			if first {
				openErr.CompareAndSwap(nil, fmt.Errorf("stream of %s: %w", w.slug, err))
				opened.Done()
			}
		}()
	}
	opened.Wait()
	if e, ok := openErr.Load().(error); ok {
		return 0, 0, 0, e
	}
	var lat []time.Duration
	rng := rand.New(rand.NewPCG(1, 2))
	for k := range o.edits {
		i := rng.IntN(len(workers))
		w := workers[i]
		// Every other edit rotates the source's credentials Secret instead:
		// the gateway watches each referenced Secret by name.
		var obj client.Object = &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "armis"}}
		value := "https://" + w.slug + "-edit-" + strconv.Itoa(k) + ".armis.example"
		patch := `{"spec":{"endpoint":"` + value + `"}}`
		if k%2 == 1 {
			obj = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "armis"}}
			value = w.slug + "-rotated-" + strconv.Itoa(k)
			patch = `{"stringData":{"secret_key":"` + value + `"}}`
		}
		t0 := time.Now()
		if err := env.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			return 0, 0, 0, fmt.Errorf("editing %s: %w", w.slug, err)
		}
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case a := <-arrivals[i]:
				if a.endpoint == value || a.secret == value {
					lat = append(lat, a.at.Sub(t0))
					break wait
				}
			case <-timeout:
				return 0, 0, 0, fmt.Errorf("edit %d of %s was not pushed within 30 s", k, w.slug)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	for i := range arrivals {
		stray += int64(len(arrivals[i]))
	}
	slices.Sort(lat)
	return benchkit.Ms(benchkit.Percentile(lat, 0.50)), benchkit.Ms(benchkit.Percentile(lat, 0.99)), stray, nil
}
