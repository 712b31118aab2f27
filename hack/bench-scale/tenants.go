package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/hack/benchkit"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/bundle"
)

// tenantsCurve streams o.tenantDevices devices for each of T tenants at
// once, for each point T of o.tenants. The cluster holds the largest
// point's tenants throughout; a point's tenants are the first T.
func tenantsCurve(ctx context.Context, o options) (curve, error) {
	h, err := newHarness(ctx, o, "tenants")
	if err != nil {
		return curve{}, err
	}
	defer h.stop()
	if err := h.addTenants(ctx, slugs("t", 0, slices.Max(o.tenants)), o.tenantDevices); err != nil {
		return curve{}, err
	}
	inv := benchkit.NewInventory(o.tenantDevices)
	c := curve{name: "tenants", xKey: "tenants", xName: "tenants streaming at once",
		title: fmt.Sprintf("Tenants streaming at once, %d devices each, over mTLS into one gateway", o.tenantDevices),
		metrics: []metric{
			{key: "time", label: "time until all finished (s)", perUnit: true},
			{key: "devices_per_s", label: "aggregate devices/s"},
			{key: "rss", label: "gateway peak RSS (MiB)"},
			{key: "starvation", label: "slowest / median tenant"},
		}}
	for _, t := range o.tenants {
		p, err := h.tenantsPoint(ctx, inv, t)
		if err != nil {
			return curve{}, fmt.Errorf("%d tenants at once: %w", t, err)
		}
		c.xs = append(c.xs, float64(t))
		for i, y := range []float64{p.wall.Seconds(), p.rate, float64(p.peak), p.starvation()} {
			c.metrics[i].ys = append(c.metrics[i].ys, y)
		}
	}
	return c, nil
}

// tenantsPoint is one point of the tenants curve.
type tenantsPoint struct {
	wall, median, slowest time.Duration
	rate                  float64
	peak                  int64
	errors                int
	throttled             float64
}

func (p tenantsPoint) starvation() float64 {
	if p.median <= 0 {
		return 0
	}
	return p.slowest.Seconds() / p.median.Seconds()
}

// tenantsPoint starts a gateway on a fresh database, waits until every
// tenant's schema is migrated, connects the first t tenants' workers, and
// then streams their inventories at once.
func (h *harness) tenantsPoint(ctx context.Context, inv *benchkit.Inventory, t int) (tenantsPoint, error) {
	var p tenantsPoint
	gw, err := h.startGateway(ctx, "")
	if err != nil {
		return p, err
	}
	defer gw.stop(true)
	if _, err := h.waitSchemas(ctx, gw.dsn, 10*time.Minute); err != nil {
		return p, err
	}
	tenants := h.slugs[:t]
	conns := make([]*grpc.ClientConn, t)
	clients := make([]pb.AgentGatewayServiceClient, t)
	srcs := make([]bundle.Source, t)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	// Every worker connects and fetches its bundle first, as workers do on
	// start: the handshakes are not part of the figure.
	if err := benchkit.Parallel(t, 16, func(i int) error {
		slug := tenants[i]
		var err error
		if conns[i], err = benchkit.WorkerConn(h.root, filepath.Join(h.dir, fmt.Sprintf("p%d-%s", t, slug)), slug, benchkit.AgentID(slug), gw.Addr); err != nil {
			return err //nolint:wrapcheck // names the tenant
		}
		clients[i] = pb.NewAgentGatewayServiceClient(conns[i])
		srcs[i], err = benchkit.OnlySource(ctx, clients[i], benchkit.AgentID(slug))
		return err //nolint:wrapcheck // names the tenant
	}); err != nil {
		return p, err //nolint:wrapcheck // names the tenant
	}

	cpu0, err := benchkit.ReadCPU(gw.Process)
	if err != nil {
		return p, err //nolint:wrapcheck // names what it read
	}
	took := make([]time.Duration, t)
	errs := make([]error, t)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range t {
		wg.Go(func() {
			_, errs[i] = inv.Stream(ctx, clients[i], benchkit.AgentID(tenants[i]), srcs[i], h.o.segment)
			took[i] = time.Since(begin)
		})
	}
	wg.Wait()
	p.wall = time.Since(begin)
	cpu1, err := benchkit.ReadCPU(gw.Process)
	if err != nil {
		return p, err //nolint:wrapcheck // names what it read
	}
	// Every tenant that finished has its whole inventory, in its own schema.
	var firstErr error
	for i, slug := range tenants {
		if errs[i] == nil {
			errs[i] = h.checkDevices(ctx, gw.dsn, slug, inv.Len())
		}
		if errs[i] != nil {
			p.errors++
			firstErr = errors.Join(firstErr, fmt.Errorf("tenant %s: %w", slug, errs[i]))
		}
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	p.median, p.slowest = sorted[(len(sorted)-1)/2], sorted[len(sorted)-1]
	p.rate = float64((t-p.errors)*inv.Len()) / p.wall.Seconds()
	if p.peak, _, err = gw.Memory(); err != nil {
		return p, err //nolint:wrapcheck // names what it read
	}
	m, err := benchkit.ScrapeMetrics(ctx, gw.metrics)
	if err != nil {
		return p, err //nolint:wrapcheck // names what failed
	}
	p.throttled = m.Sum("sync_gateway_throttled_total")
	var byLimit []string
	for _, l := range []string{"caller_streams", "streams", "caller_ingest_memory", "ingest_memory"} {
		byLimit = append(byLimit, fmt.Sprintf("%s %.0f", l, m.Sum("sync_gateway_throttled_total", "limit", l)))
	}
	fmt.Printf("tenants: %d at once x %d devices in %s: %.0f devices/s; tenant times median %s, slowest %s; %d failed, %.0f calls throttled (%s) (CPU: %s)\n",
		t, inv.Len(), p.wall.Round(time.Millisecond), p.rate, p.median.Round(time.Millisecond), p.slowest.Round(time.Millisecond),
		p.errors, p.throttled, strings.Join(byLimit, ", "), cpu1.Since(cpu0))
	if firstErr != nil {
		fmt.Printf("tenants: failures: %v\n", firstErr)
	}
	fmt.Printf("RESULT curve=tenants tenants=%d devices=%d devices_per_s=%.0f wall_s=%.2f median_s=%.2f slowest_s=%.2f starvation=%.2f errors=%d throttled=%.0f peak_rss_mib=%d rss_limit_mib=%d\n",
		t, t*inv.Len(), p.rate, p.wall.Seconds(), p.median.Seconds(), p.slowest.Seconds(), p.starvation(), p.errors, p.throttled, p.peak, h.o.memoryLimitMiB)
	return p, nil
}

// checkDevices checks that tenant slug's schema holds want available
// devices.
func (h *harness) checkDevices(ctx context.Context, dsn, slug string, want int) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var total, available int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE is_available) FROM "+pgx.Identifier{store.Schema(slug), "ocsf_devices"}.Sanitize()).
		Scan(&total, &available); err != nil {
		return fmt.Errorf("counting devices: %w", err)
	}
	if total != want || available != want {
		return fmt.Errorf("%d devices (%d available), want %d", total, available, want)
	}
	return nil
}
