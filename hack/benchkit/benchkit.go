// Package benchkit is what the gateway benchmarks under hack/ share: a sync
// worker's mTLS connection with its own SVID, its bundle's one source, the
// synthetic inventory of bench-ingest streamed as one full run, GetConfig
// throughput over several connections, the CPU split between the bench, the
// gateway and PostgreSQL, the gateway's metrics, and small helpers
// (parallel loops, percentiles, environment for a child process).
package benchkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/chunk"
)

// AgentID is the component id of tenant slug's worker of the platform
// SyncService "platform-sync", as the benchmarks name it.
func AgentID(slug string) string { return "platform-sync-" + slug }

// WorkerConn connects to the gateway at addr over mTLS as the sync worker
// agentID of tenant slug, with an SVID root issues (written under files),
// and opts besides. The connection is made on its first call.
func WorkerConn(root *ca.Authority, files, slug, agentID, addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	svid, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/"+slug+"/default/"+agentID), time.Hour)
	if err != nil {
		return nil, fmt.Errorf("issuing the SVID of %s: %w", slug, err)
	}
	f, err := pkitest.WriteFiles(files, svid, root.Cert)
	if err != nil {
		return nil, err //nolint:wrapcheck // pkitest names the files
	}
	classifier, err := identity.NewClassifier("", "")
	if err != nil {
		return nil, fmt.Errorf("classifier: %w", err)
	}
	src, err := mtls.NewFileSource(f.Cert, f.Key, f.CA, classifier.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("identity of %s: %w", slug, err)
	}
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{})))}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting %s to the gateway: %w", slug, err)
	}
	return conn, nil
}

// OnlySource fetches agentID's bundle and returns its one source.
func OnlySource(ctx context.Context, c pb.AgentGatewayServiceClient, agentID string) (bundle.Source, error) {
	cfg, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: agentID})
	if err != nil {
		return bundle.Source{}, fmt.Errorf("GetConfig of %s: %w", agentID, err)
	}
	var b bundle.Sync
	if err := json.Unmarshal(cfg.ConfigJson, &b); err != nil || len(b.Sources) != 1 {
		return bundle.Source{}, fmt.Errorf("the bundle of %s has %d sources: %w", agentID, len(b.Sources), err)
	}
	var src bundle.Source
	for _, s := range b.Sources {
		src = s
	}
	return src, nil
}

// Inventory is the synthetic fleet of bench-ingest: device i has a Faker
// id, one to three MACs and a primary IP that Churn swaps.
type Inventory struct {
	ips []string
	// cycle is the sync cycle the fleet is in (see Churn): its devices are
	// seen cycle CycleInterval after now.
	cycle int
}

// CycleInterval is how far apart a source's runs are in the fleet's time:
// the next cycle (Churn) reports every device an hour later, as an hourly
// source does, so that its run moves every device's last_seen at every
// inventory size, as production runs do.
const CycleInterval = time.Hour

// NewInventory is a fleet of n devices with distinct primary IPs.
func NewInventory(n int) *Inventory {
	inv := &Inventory{ips: make([]string, n)}
	for i := range inv.ips {
		inv.ips[i] = fmt.Sprintf("172.%d.%d.%d", 16+i>>16&15, i>>8&255, i&255)
	}
	return inv
}

// Len is the number of devices.
func (inv *Inventory) Len() int { return len(inv.ips) }

// Device is device i as source sourceUID reports it.
func (inv *Inventory) Device(i int, sourceUID string) results.DeviceUpdate {
	yes := true
	macs := ""
	for k := range 1 + i%3 {
		if k > 0 {
			macs += ","
		}
		macs += fmt.Sprintf("00:1b:%02x:%02x:%02x:%02x", k, i>>16&255, i>>8&255, i&255)
	}
	return results.DeviceUpdate{IP: inv.ips[i], MAC: macs[:17], Hostname: fmt.Sprintf("dev-%06d", i), Source: "faker", IsAvailable: &yes,
		Timestamp: time.Now().Add(time.Duration(inv.cycle) * CycleInterval).UTC().Format(time.RFC3339),
		Metadata: map[string]string{"faker_device_id": fmt.Sprintf("fk-%d", i), "integration_type": "faker",
			"integration_source_uid": sourceUID, "all_macs": macs, "vendor": "Acme Networks"}}
}

// Churn moves the fleet to its next sync cycle and swaps the primary IPs
// of pct percent of the devices in pairs (DHCP churn), the same ones every
// time for a fleet of the same size.
func (inv *Inventory) Churn(pct int) {
	inv.cycle++
	n := len(inv.ips)
	rng := rand.New(rand.NewPCG(42, 42)) //nolint:gosec // a reproducible synthetic fleet
	for range n * pct / 100 / 2 {
		a, b := rng.IntN(n), rng.IntN(n)
		inv.ips[a], inv.ips[b] = inv.ips[b], inv.ips[a]
	}
}

// Stream sends the whole inventory as one complete run of src by agentID,
// in StreamStatus segments of segment devices, and returns how long it took
// until the gateway acknowledged the last one.
func (inv *Inventory) Stream(ctx context.Context, c pb.AgentGatewayServiceClient, agentID string, src bundle.Source, segment int) (time.Duration, error) {
	s := &chunk.Sender{Client: c, AgentID: agentID, SegmentDevices: segment,
		Meta: results.Meta{SyncServiceID: src.SyncServiceID, IntegrationSourceUID: src.IntegrationSourceUID, SyncRunID: uuid.NewString()}}
	begin := time.Now()
	for i := range inv.ips {
		if err := s.Add(ctx, inv.Device(i, src.IntegrationSourceUID)); err != nil {
			return 0, err //nolint:wrapcheck // chunk names the segment
		}
	}
	if err := s.Finish(ctx, true, ""); err != nil {
		return 0, err //nolint:wrapcheck // chunk names the segment
	}
	return time.Since(begin), nil
}

// CPU is the CPU time used so far by this process (the workers' side), the
// gateway and PostgreSQL.
type CPU [3]time.Duration

// ReadCPU reads the CPU time of this process, gw and PostgreSQL.
func ReadCPU(gw *gatewayproc.Process) (CPU, error) {
	var out CPU
	var err error
	if out[0], err = gatewayproc.CPU(os.Getpid()); err != nil {
		return out, err //nolint:wrapcheck // names what it read
	}
	if out[1], err = gw.CPU(); err != nil {
		return out, err //nolint:wrapcheck // names what it read
	}
	if out[2], err = gatewayproc.CPUOf("postgres"); err != nil {
		return out, err //nolint:wrapcheck // names what it read
	}
	return out, nil
}

// Since is the CPU each side used between from and c.
func (c CPU) Since(from CPU) CPU { return CPU{c[0] - from[0], c[1] - from[1], c[2] - from[2]} }

// String is "this client <t>, gateway <t>, PostgreSQL <t>".
func (c CPU) String() string {
	return fmt.Sprintf("this client %s, gateway %s, PostgreSQL %s", c[0], c[1], c[2])
}

// Caller is one tenant worker's GetConfig client.
type Caller struct {
	// AgentID is the worker's component id; Client its connection's client.
	AgentID string
	Client  pb.AgentGatewayServiceClient
}

// Load shapes a GetConfig throughput phase.
type Load struct {
	// Conns callers (at most as many as are given) with Concurrency calls
	// in flight each, for Duration.
	Conns, Concurrency int
	Duration           time.Duration
}

// Throughput runs GetConfig as l says over callers: with each caller's
// current version (not_modified answers) when versions is set, else asking
// for the full bundle; it returns requests per second and the p99 and p50
// latency in milliseconds. A failed call or a wrong answer fails it.
func Throughput(ctx context.Context, l Load, callers []Caller, versions []string) (rps, p99, p50 float64, err error) {
	conns := min(l.Conns, len(callers))
	lat := make([][]time.Duration, conns*l.Concurrency)
	var failed atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(l.Duration)
	var wg sync.WaitGroup
	begin := time.Now()
	for g := range lat {
		w := callers[g%conns]
		version := ""
		if versions != nil {
			version = versions[g%conns]
		}
		wg.Go(func() {
			req := &pb.AgentConfigRequest{AgentId: w.AgentID, ConfigVersion: version}
			for time.Now().Before(stop) {
				t0 := time.Now()
				resp, err := w.Client.GetConfig(ctx, req)
				lat[g] = append(lat[g], time.Since(t0))
				if err != nil || resp.NotModified != (version != "") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v not_modified=%v", err, resp.GetNotModified()))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if n := failed.Load(); n > 0 {
		return 0, 0, 0, fmt.Errorf("%d GetConfig calls failed or answered wrongly, first: %v", n, firstErr.Load())
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return float64(len(all)) / elapsed.Seconds(), Ms(Percentile(all, 0.99)), Ms(Percentile(all, 0.50)), nil
}

// Percentile is the p-quantile (0..1) of sorted durations; 0 when empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Parallel runs f(0..n-1) on at most width goroutines and returns the
// errors joined; a goroutine stops at its first error.
func Parallel(n, width int, f func(int) error) error {
	var mu sync.Mutex
	var errs []error
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range width {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Setenv sets the variables of env in this process's environment, which a
// child process started next inherits, and returns what puts the previous
// values back.
func Setenv(env map[string]string) (restore func()) {
	old := map[string]*string{}
	for k, v := range env {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		_ = os.Setenv(k, v)
	}
	return func() {
		for k, prev := range old {
			if prev == nil {
				_ = os.Unsetenv(k)
			} else {
				_ = os.Setenv(k, *prev)
			}
		}
	}
}

// Metrics are the gateway's metric families, by name.
type Metrics map[string]*dto.MetricFamily

// ScrapeMetrics reads the gateway's /metrics at addr
// (--metrics-bind-address).
func ScrapeMetrics(ctx context.Context, addr string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("scraping the gateway: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping the gateway: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the gateway's metrics: %w", err)
	}
	return Metrics(families), nil
}

// Sum adds the values of every counter and gauge of family name whose
// labels include labels (name, value pairs).
func (m Metrics) Sum(name string, labels ...string) float64 {
	var total float64
	f := m[name]
	if f == nil {
		return 0
	}
next:
	for _, s := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(s.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
				continue next
			}
		}
		total += s.GetCounter().GetValue() + s.GetGauge().GetValue()
	}
	return total
}
