// Command bench-scale measures how the gateway's costs grow (`make
// bench-scale`), with the gateway binary as its own process on a real API
// server and PostgreSQL, reached over real mTLS by one SVID per tenant
// worker, as bench-ingest and bench-gateway do. It draws three curves, each
// point on a fresh database and a freshly started gateway (run with
// GOMEMLIMIT at the chart's memory limit):
//
//   - tenants: TENANTS tenants stream TENANT-DEVICES devices each at once,
//     each its own worker identity and source: aggregate devices/s, the
//     gateway's peak resident memory, the slowest tenant's time against the
//     median (starvation), failed runs and throttled calls;
//   - inventory: one source of SIZE devices, a full first run and then a
//     run with CHURN percent of primary IPs swapped: devices/s, churn cycle
//     time, peak resident memory;
//   - schemas: SCHEMAS tenants (one source each) in the cluster: the time
//     the gateway takes to migrate their fresh schemas, its start time (to
//     serving) with the schemas existing, and GetConfig throughput.
//
// Each point ends with a RESULT curve=<name> line, each curve with a RESULT
// line giving each metric's shape (flat, sublinear, linear,
// worse-than-linear: from the exponent k of y ~ x^k of its steepest step)
// and an SVG plot under --out.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/hack/benchkit"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/workers/chunk"
)

// options are the command's flags.
type options struct {
	tenants, sizes, schemas []int
	tenantDevices, churn    int
	segment                 int
	gateway, out            string
	gatewayArgs             []string
	memoryLimitMiB          int
	load                    benchkit.Load
}

func main() {
	var o options
	tenants := flag.String("tenants", "1,10,100,300", "points of the tenants curve: tenants streaming at once (empty skips the curve)")
	sizes := flag.String("sizes", "10000,100000,1000000", "points of the inventory curve: devices of one source (empty skips the curve)")
	schemas := flag.String("schemas", "10,100,1000", "points of the schemas curve: tenant schemas (empty skips the curve)")
	flag.IntVar(&o.tenantDevices, "tenant-devices", 5000, "devices of each tenant in the tenants curve")
	flag.IntVar(&o.churn, "churn", 5, "percent of devices whose primary IPs are swapped in the inventory curve's churn run")
	flag.IntVar(&o.segment, "segment", chunk.DefaultSegmentDevices, "devices per StreamStatus segment")
	flag.StringVar(&o.gateway, "gateway", "bin/gateway", "the gateway binary")
	flag.StringVar(&o.out, "out", "bin/bench-scale", "folder of the SVG plots")
	args := flag.String("gateway-args", "", "extra gateway flags, space-separated (e.g. \"--postgres-max-conns=20 --max-status-streams=64\")")
	flag.IntVar(&o.memoryLimitMiB, "gateway-memory-limit-mib", 1024, "GOMEMLIMIT of the gateway, in MiB: the chart's gateway memory limit (0: none)")
	flag.IntVar(&o.load.Conns, "conns", 16, "connections (distinct tenant workers) of the GetConfig phase")
	flag.IntVar(&o.load.Concurrency, "concurrency", 8, "GetConfig calls in flight per connection")
	flag.DurationVar(&o.load.Duration, "getconfig-duration", 5*time.Second, "how long the GetConfig phase of each schemas point runs")
	flag.Parse()
	// The API server harness and the grant controller use controller-runtime;
	// their logs are not the figures.
	ctrl.SetLogger(logr.Discard())
	var err error
	for _, f := range []struct {
		flag string
		into *[]int
	}{{*tenants, &o.tenants}, {*sizes, &o.sizes}, {*schemas, &o.schemas}} {
		if *f.into, err = points(f.flag); err != nil {
			fmt.Fprintln(os.Stderr, "bench-scale:", err)
			os.Exit(2)
		}
	}
	o.gatewayArgs = strings.Fields(*args)
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

// points parses "1,10,100" into ascending, distinct positive numbers.
func points(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("point %q is not a positive number", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func run(o options) error {
	ctx := context.Background()
	defer func() { _ = pgtest.Stop() }()
	for _, c := range []struct {
		points []int
		run    func(context.Context, options) (curve, error)
	}{{o.tenants, tenantsCurve}, {o.sizes, inventoryCurve}, {o.schemas, schemasCurve}} {
		if len(c.points) == 0 {
			continue
		}
		cv, err := c.run(ctx, o)
		if err != nil {
			return err
		}
		plot, err := cv.write(o.out)
		if err != nil {
			return err
		}
		fmt.Println(cv.summary(plot))
	}
	return nil
}

// harness is one curve's API server and platform SyncService, and the root
// CA that issues the gateway's and the workers' SVIDs.
type harness struct {
	o     options
	env   *kubetest.Env
	root  *ca.Authority
	dir   string
	ref   v1alpha1.SyncServiceReference
	slugs []string
}

// newHarness starts an API server with the platform tenant and its
// SyncService.
func newHarness(ctx context.Context, o options, name string) (*harness, error) {
	dir, err := os.MkdirTemp("", "bench-scale-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	env, err := kubetest.Start()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err //nolint:wrapcheck // kubetest says what failed
	}
	h := &harness{o: o, env: env, dir: dir}
	if h.root, err = ca.NewRoot("bench root", 0, nil); err != nil {
		h.stop()
		return nil, fmt.Errorf("creating root CA: %w", err)
	}
	platformNS, _, err := env.OnboardTenant(ctx, "platform", true)
	if err != nil {
		h.stop()
		return nil, err //nolint:wrapcheck // kubetest names the tenant
	}
	h.ref = v1alpha1.SyncServiceReference{Namespace: platformNS, Name: "platform-sync"}
	if err := env.Client.Create(ctx, &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: h.ref.Name, Namespace: platformNS},
		Spec: v1alpha1.SyncServiceSpec{Platform: true}}); err != nil {
		h.stop()
		return nil, fmt.Errorf("creating the platform SyncService: %w", err)
	}
	return h, nil
}

func (h *harness) stop() {
	_ = h.env.Stop()
	_ = os.RemoveAll(h.dir)
}

// addTenants onboards tenants slugs, each with one Faker source "lab" of
// devices devices served by the platform SyncService.
func (h *harness) addTenants(ctx context.Context, slugs []string, devices int) error {
	begin := time.Now()
	err := benchkit.Parallel(len(slugs), 16, func(i int) error {
		ns, _, err := h.env.OnboardTenant(ctx, slugs[i], false)
		if err != nil {
			return err //nolint:wrapcheck // kubetest names the tenant
		}
		src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: int32(min(devices, 1<<30))}, //nolint:gosec // bounded
			SyncServiceRef: h.ref}}
		if err := h.env.Client.Create(ctx, src); err != nil {
			return fmt.Errorf("creating the source of %s: %w", slugs[i], err)
		}
		return nil
	})
	if err != nil {
		return err //nolint:wrapcheck // names the tenant
	}
	h.slugs = append(h.slugs, slugs...)
	fmt.Printf("onboarded %d tenants (%d in all) in %s\n", len(slugs), len(h.slugs), time.Since(begin).Round(time.Millisecond))
	return nil
}

// gateway is a gateway process on a fresh database of its own.
type gateway struct {
	*gatewayproc.Process
	dsn, metrics string
	drop         func() error
}

// startGateway creates a database (unless dsn is set) and starts the
// gateway on it, with the chart's memory limit and the extra flags.
func (h *harness) startGateway(ctx context.Context, dsn string) (*gateway, error) {
	g := &gateway{dsn: dsn, drop: func() error { return nil }}
	if dsn == "" {
		var err error
		if g.dsn, g.drop, err = pgtest.CreateDatabase(ctx); err != nil {
			return nil, err //nolint:wrapcheck // pgtest says what failed
		}
	}
	var err error
	if g.metrics, err = gatewayproc.FreeAddr(); err != nil {
		_ = g.drop()
		return nil, err //nolint:wrapcheck // names what failed
	}
	env := map[string]string{}
	if h.o.memoryLimitMiB > 0 {
		env["GOMEMLIMIT"] = strconv.Itoa(h.o.memoryLimitMiB) + "MiB"
	}
	// Only the gateway runs with env: a process takes its environment when
	// it starts.
	restore := benchkit.Setenv(env)
	g.Process, err = gatewayproc.Start(ctx, gatewayproc.Options{Binary: h.o.gateway, Dir: h.dir, Env: h.env, Root: h.root, PostgresDSN: g.dsn,
		Args: append([]string{"--metrics-bind-address=" + g.metrics}, h.o.gatewayArgs...), ProbeInterval: 10 * time.Millisecond})
	restore()
	if err != nil {
		_ = g.drop()
		return nil, err //nolint:wrapcheck // gatewayproc says what failed
	}
	return g, nil
}

// stop stops the gateway and, with dropDB, drops its database.
func (g *gateway) stop(dropDB bool) {
	g.Stop()
	if dropDB {
		_ = g.drop()
	}
}

// waitSchemas waits until every tenant of the cluster (the platform's
// too) has its schema, migrated in one transaction, and returns when the
// last one's migrations were applied (its transaction's start).
func (h *harness) waitSchemas(ctx context.Context, dsn string, limit time.Duration) (time.Time, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return time.Time{}, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	want := len(h.slugs) + 1
	deadline := time.Now().Add(limit)
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\_%'`).Scan(&n); err != nil {
			return time.Time{}, fmt.Errorf("counting schemas: %w", err)
		}
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d tenant schemas after %s", n, want, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	parts := make([]string, 0, want)
	for _, slug := range append([]string{"platform"}, h.slugs...) {
		parts = append(parts, "SELECT max(applied_at) AS at FROM "+pgx.Identifier{store.Schema(slug), "schema_migrations"}.Sanitize())
	}
	var last time.Time
	if err := conn.QueryRow(ctx, "SELECT max(at) FROM ("+strings.Join(parts, " UNION ALL ")+") s").Scan(&last); err != nil {
		return time.Time{}, fmt.Errorf("reading when the schemas were migrated: %w", err)
	}
	return last, nil
}

// slugs is n tenant slugs prefix0000, prefix0001, ... from the from-th.
func slugs(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, from+i)
	}
	return out
}
