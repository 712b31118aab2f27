// Command bench-hostile measures the gateway under hostile callers (`make
// bench-hostile`, issue 14 defect 2): the gateway binary, with its default
// limits, serves a well-behaved worker's run of DEVICES devices over mTLS
// while UNKNOWN callers with edge certificates of a tenant that does not
// exist and ENROLLED callers of other tenants (spread over ENROLLED-TENANTS
// certificate identities, one by default, as one compromised worker has)
// stream the largest calls they may, over and over: 4 MiB chunks, and for
// the enrolled ones whole 63 MiB calls that are refused at their end. The
// gateway runs with GOMEMLIMIT set to MEMORY-LIMIT, as the chart sets it
// from the container's memory limit. It prints the gateway's peak resident
// memory, how many calls were throttled, and ends with one line:
// RESULT hostile_callers=<n> good_run_completed=<bool> good_run_s=<n> peak_rss_mib=<n> throttled=<n> hostile_calls=<n>.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/hack/benchkit"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/chunk"
)

func main() {
	devices := flag.Int("devices", 50000, "devices in the well-behaved worker's run")
	unknown := flag.Int("unknown", 25, "hostile callers with edge certificates of a tenant that does not exist")
	enrolled := flag.Int("enrolled", 25, "hostile callers enrolled as another tenant's worker")
	enrolledTenants := flag.Int("enrolled-tenants", 1, "tenants (certificate identities) the enrolled hostile callers are spread over")
	gateway := flag.String("gateway", "bin/gateway", "the gateway binary")
	memoryLimit := flag.String("memory-limit", "1GiB", "GOMEMLIMIT of the gateway process, as the chart sets it from resources.limits.memory (empty: none)")
	heapProfile := flag.String("heap-profile", "", "write the gateway's heap profile taken at its highest resident memory to this file")
	gctrace := flag.Bool("gctrace", false, "run the gateway with GODEBUG=gctrace=1 (its collections on stderr)")
	flag.Parse()
	gatewayEnv := map[string]string{}
	if *memoryLimit != "" {
		gatewayEnv["GOMEMLIMIT"] = *memoryLimit
	}
	if *gctrace {
		gatewayEnv["GODEBUG"] = "gctrace=1"
	}
	if err := run(benchmark{devices: *devices, unknown: *unknown, enrolled: *enrolled, enrolledTenants: max(1, *enrolledTenants),
		gateway: *gateway, gatewayEnv: gatewayEnv, heapProfile: *heapProfile}); err != nil {
		fmt.Fprintln(os.Stderr, "bench-hostile:", err)
		os.Exit(1)
	}
}

// benchmark is what the flags ask for.
type benchmark struct {
	devices, unknown, enrolled, enrolledTenants int
	gateway, heapProfile                        string
	gatewayEnv                                  map[string]string
}

// abusers are the slugs of the tenants whose workers are hostile.
func (b benchmark) abusers() []string {
	out := []string{"globex"}
	for i := 1; i < b.enrolledTenants; i++ {
		out = append(out, fmt.Sprintf("globex%d", i))
	}
	return out
}

func run(b benchmark) error {
	n, unknown, enrolled, gatewayBin, gatewayEnv, heapProfile := b.devices, b.unknown, b.enrolled, b.gateway, b.gatewayEnv, b.heapProfile
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-hostile-")
	if err != nil {
		return fmt.Errorf("creating temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env, err := kubetest.Start()
	if err != nil {
		return err //nolint:wrapcheck // names what failed
	}
	defer func() { _ = env.Stop() }()
	defer func() { _ = pgtest.Stop() }()
	dsn, drop, err := pgtest.CreateDatabase(ctx)
	if err != nil {
		return err //nolint:wrapcheck // names what failed
	}
	defer func() { _ = drop() }()
	if err := populate(ctx, env, n, b.abusers()); err != nil {
		return err
	}
	root, err := ca.NewRoot("bench root", 0, nil)
	if err != nil {
		return fmt.Errorf("creating root CA: %w", err)
	}
	metricsAddr, err := gatewayproc.FreeAddr()
	if err != nil {
		return err //nolint:wrapcheck // names what failed
	}
	args := []string{"--metrics-bind-address=" + metricsAddr}
	var pprofAddr string
	if heapProfile != "" {
		if pprofAddr, err = gatewayproc.FreeAddr(); err != nil {
			return err //nolint:wrapcheck // names what failed
		}
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	// Only the gateway runs with gatewayEnv (the bench, the API server and
	// etcd were started without it): the process takes its environment at
	// its start.
	restore := benchkit.Setenv(gatewayEnv)
	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{Binary: gatewayBin, Dir: dir, Env: env, Root: root, PostgresDSN: dsn, Args: args})
	restore()
	if err != nil {
		return err //nolint:wrapcheck // names what failed
	}
	defer gw.Stop()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watched := make(chan error, 1)
	go func() { watched <- watchPeak(watchCtx, gw, pprofAddr, heapProfile) }()

	good, err := conn(root, dir, gw.Addr, "good", svid(root, "sync/acme/default/platform-sync-acme"))
	if err != nil {
		return err
	}
	defer func() { _ = good.Close() }()
	goodClient := pb.NewAgentGatewayServiceClient(good)
	acmeSource, err := onlySource(ctx, goodClient, "platform-sync-acme")
	if err != nil {
		return err
	}

	// The hostile callers.
	hooli, err := root.NewTenantCA("hooli", 0) // no Tenant has this slug
	if err != nil {
		return fmt.Errorf("creating hooli's CA: %w", err)
	}
	hostileCtx, stopHostile := context.WithCancel(ctx)
	defer stopHostile()
	var wg sync.WaitGroup
	var calls, refused atomic.Int64
	hostile := func(c pb.AgentGatewayServiceClient, chunks func() []*pb.GatewayStatusChunk) {
		defer wg.Done()
		for hostileCtx.Err() == nil {
			st, err := c.StreamStatus(hostileCtx)
			if err != nil {
				continue
			}
			for _, ch := range chunks() {
				if st.Send(ch) != nil {
					break
				}
			}
			if _, err := st.CloseAndRecv(); err != nil {
				refused.Add(1)
			}
			calls.Add(1)
		}
	}
	// 4 MiB chunks (the gRPC limit), as many as a call may have.
	junk := []byte(`[` + strings.Repeat(" ", (4<<20)-1024) + `]`)
	unknownChunks := func() []*pb.GatewayStatusChunk {
		out := make([]*pb.GatewayStatusChunk, 128)
		for i := range out {
			out[i] = &pb.GatewayStatusChunk{AgentId: "edge", ChunkIndex: int32(i), TotalChunks: 128, IsFinal: i == 127, //nolint:gosec // < 128
				Services: []*pb.GatewayServiceStatus{{ServiceName: results.ServiceName, Source: results.Source, Message: junk}}}
		}
		return out
	}
	for i := range unknown {
		issued, err := hooli.IssueEdgeClient(fmt.Sprintf("edge-%d", i), "hq", "hooli", time.Hour)
		if err != nil {
			return fmt.Errorf("issuing a hostile edge certificate: %w", err)
		}
		cc, err := conn(root, dir, gw.Addr, fmt.Sprintf("unknown-%d", i), issued)
		if err != nil {
			return err
		}
		defer func() { _ = cc.Close() }()
		wg.Add(1)
		go hostile(pb.NewAgentGatewayServiceClient(cc), unknownChunks)
	}
	// Enrolled: devices of 2 KiB that name acme's source, in 3 MiB messages
	// (21 of them: 63 MiB, within the call's limit), refused at the end.
	var dev strings.Builder
	dev.WriteString("[")
	for dev.Len() < 3<<20 {
		if dev.Len() > 1 {
			dev.WriteString(",")
		}
		fmt.Fprintf(&dev, `{"ip":"10.66.0.1","hostname":%q,"metadata":{"integration_source_uid":%q,"armis_device_id":"1"}}`, strings.Repeat("e", 2048), acmeSource)
	}
	dev.WriteString("]")
	enrolledMsg := []byte(dev.String())
	enrolledChunks := func(agentID string) func() []*pb.GatewayStatusChunk {
		return func() []*pb.GatewayStatusChunk {
			out := make([]*pb.GatewayStatusChunk, 21)
			for i := range out {
				out[i] = &pb.GatewayStatusChunk{AgentId: agentID, ChunkIndex: int32(i), TotalChunks: 21, IsFinal: i == 20, //nolint:gosec // < 21
					Services: []*pb.GatewayServiceStatus{{ServiceName: results.ServiceName, Source: results.Source, Message: enrolledMsg}}}
			}
			return out
		}
	}
	abusers := b.abusers()
	for i := range enrolled {
		slug := abusers[i%len(abusers)]
		agentID := "platform-sync-" + slug
		cc, err := conn(root, dir, gw.Addr, fmt.Sprintf("enrolled-%d", i), svid(root, "sync/"+slug+"/default/"+agentID))
		if err != nil {
			return err
		}
		defer func() { _ = cc.Close() }()
		wg.Add(1)
		go hostile(pb.NewAgentGatewayServiceClient(cc), enrolledChunks(agentID))
	}
	time.Sleep(3 * time.Second) // let the hostile load build up before the good run starts

	begin := time.Now()
	s := &chunk.Sender{Client: goodClient, AgentID: "platform-sync-acme",
		Meta: results.Meta{IntegrationSourceUID: acmeSource, SyncRunID: uuid.NewString()}}
	yes := true
	var goodErr error
	for i := range n {
		d := results.DeviceUpdate{IP: fmt.Sprintf("172.%d.%d.%d", 16+i>>16&15, i>>8&255, i&255), Hostname: fmt.Sprintf("dev-%06d", i),
			Source: "faker", IsAvailable: &yes, Timestamp: time.Now().UTC().Format(time.RFC3339),
			Metadata: map[string]string{"faker_device_id": fmt.Sprintf("fk-%d", i), "integration_type": "faker", "integration_source_uid": acmeSource}}
		if goodErr = s.Add(ctx, d); goodErr != nil {
			break
		}
	}
	if goodErr == nil {
		goodErr = s.Finish(ctx, true, "")
	}
	took := time.Since(begin)
	stopHostile()
	wg.Wait()
	stopWatch()
	if err := <-watched; err != nil {
		return err
	}
	peak, current, err := gw.Memory()
	if err != nil {
		return err //nolint:wrapcheck // names what failed
	}
	m, err := scrape(metricsAddr)
	if err != nil {
		return err
	}
	var throttled float64
	var byLimit []string
	for _, l := range []string{"caller_streams", "streams", "caller_ingest_memory", "ingest_memory"} {
		n := m[`sync_gateway_throttled_total{limit="`+l+`"}`]
		throttled += n
		byLimit = append(byLimit, fmt.Sprintf("%s %.0f", l, n))
	}
	fmt.Printf("hostile: %d unknown-tenant and %d enrolled callers (of %d tenants) made %d calls, %d refused\n",
		unknown, enrolled, len(b.abusers()), calls.Load(), refused.Load())
	fmt.Printf("throttled: %s; chunks read %.0f\n", strings.Join(byLimit, ", "), m["sync_gateway_status_chunks_total"])
	if goodErr != nil {
		fmt.Printf("good run: FAILED after %s: %v\n", took.Round(time.Millisecond), goodErr)
	} else {
		fmt.Printf("good run: %d devices acknowledged in %s\n", s.Sent(), took.Round(time.Millisecond))
	}
	fmt.Printf("gateway resident memory: peak %d MiB, now %d MiB\n", peak, current)
	fmt.Printf("RESULT hostile_callers=%d good_run_completed=%v good_run_s=%.1f peak_rss_mib=%d throttled=%.0f hostile_calls=%d\n",
		unknown+enrolled, goodErr == nil, took.Seconds(), peak, throttled, calls.Load())
	return nil
}

// watchPeak samples the gateway's resident memory until ctx ends and, when
// path is set, writes the heap profile (from pprofAddr) taken at the
// highest sample: what the heap held at the collection before the peak.
func watchPeak(ctx context.Context, gw *gatewayproc.Process, pprofAddr, path string) error {
	if path == "" {
		return nil
	}
	var best []byte
	var bestRSS int64
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if best == nil {
				return nil
			}
			fmt.Printf("heap profile at %d MiB resident: %s\n", bestRSS, path)
			if err := os.WriteFile(path, best, 0o600); err != nil {
				return fmt.Errorf("writing the heap profile: %w", err)
			}
			return nil
		case <-tick.C:
		}
		_, current, err := gw.Memory()
		if err != nil || current <= bestRSS {
			continue
		}
		profile, err := fetch(ctx, "http://"+pprofAddr+"/debug/pprof/heap")
		if err != nil {
			continue // the gateway may be too busy to answer in time
		}
		best, bestRSS = profile, current
	}
}

// fetch GETs url within 5 seconds.
func fetch(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return body, nil
}

// scrape reads the gateway's counters and gauges.
func scrape(addr string) (map[string]float64, error) {
	res, err := http.Get("http://" + addr + "/metrics") //nolint:noctx // a local scrape
	if err != nil {
		return nil, fmt.Errorf("scraping the gateway: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	return out, nil
}

func svid(root *ca.Authority, path string) *ca.Issued {
	issued, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/"+path), time.Hour)
	if err != nil {
		panic(err) // a fixed, valid SPIFFE ID
	}
	return issued
}

// onlySource is the uid of the one source in a worker's bundle.
func onlySource(ctx context.Context, c pb.AgentGatewayServiceClient, agentID string) (string, error) {
	cfg, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: agentID})
	if err != nil {
		return "", fmt.Errorf("GetConfig of %s: %w", agentID, err)
	}
	var b bundle.Sync
	if err := json.Unmarshal(cfg.ConfigJson, &b); err != nil || len(b.Sources) != 1 {
		return "", fmt.Errorf("the bundle of %s has %d sources: %w", agentID, len(b.Sources), errors.Join(err, errors.New("want 1")))
	}
	for _, s := range b.Sources {
		return s.IntegrationSourceUID, nil
	}
	return "", nil
}

// populate creates the platform and its SyncService, and tenant acme and
// the abusers' tenants with one Faker source each served by it.
func populate(ctx context.Context, env *kubetest.Env, n int, abusers []string) error {
	platformNS, _, err := env.OnboardTenant(ctx, "platform", true)
	if err != nil {
		return err //nolint:wrapcheck // kubetest names the tenant
	}
	ref := v1alpha1.SyncServiceReference{Namespace: platformNS, Name: "platform-sync"}
	objs := []client.Object{&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "platform-sync", Namespace: platformNS}, Spec: v1alpha1.SyncServiceSpec{Platform: true}}}
	for _, slug := range append([]string{"acme"}, abusers...) {
		ns, _, err := env.OnboardTenant(ctx, slug, false)
		if err != nil {
			return err //nolint:wrapcheck // kubetest names the tenant
		}
		objs = append(objs, &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: int32(n)}, SyncServiceRef: ref}}) //nolint:gosec // a flag of a bench
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	return nil
}

// conn is a client connection of its own with the identity issued.
func conn(root *ca.Authority, dir, addr, name string, issued *ca.Issued) (*grpc.ClientConn, error) {
	f, err := pkitest.WriteFiles(filepath.Join(dir, name), issued, root.Cert)
	if err != nil {
		return nil, err //nolint:wrapcheck // names what failed
	}
	classifier, err := identity.NewClassifier("", "")
	if err != nil {
		return nil, fmt.Errorf("classifier: %w", err)
	}
	src, err := mtls.NewFileSource(f.Cert, f.Key, f.CA, classifier.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", name, err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{}))))
	if err != nil {
		return nil, fmt.Errorf("connecting to the gateway: %w", err)
	}
	return cc, nil
}
