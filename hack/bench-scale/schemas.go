package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/serviceradar/sync-operator/hack/benchkit"
	pb "github.com/serviceradar/sync-operator/proto"
)

// schemasCurve grows the cluster to each point of o.schemas tenants (one
// source each) and, on a fresh database, measures the gateway migrating
// their schemas, then a second start with the schemas existing and the
// GetConfig throughput of that gateway.
func schemasCurve(ctx context.Context, o options) (curve, error) {
	h, err := newHarness(ctx, o, "schemas")
	if err != nil {
		return curve{}, err
	}
	defer h.stop()
	c := curve{name: "schemas", xKey: "schemas", xName: "tenant schemas",
		title: "Tenant schemas: gateway start, migration of fresh schemas, GetConfig",
		metrics: []metric{
			{key: "migrate", label: "migrating fresh schemas (s)", perUnit: true},
			{key: "start", label: "start to serving, schemas exist (s)"},
			{key: "getconfig_cost", label: "GetConfig cost (µs per call)"},
			{key: "rss", label: "gateway peak RSS (MiB)"},
		}}
	for _, n := range o.schemas {
		if err := h.addTenants(ctx, slugs("s", len(h.slugs), n-len(h.slugs)), 1000); err != nil {
			return curve{}, err
		}
		p, err := h.schemasPoint(ctx)
		if err != nil {
			return curve{}, fmt.Errorf("%d tenant schemas: %w", n, err)
		}
		c.xs = append(c.xs, float64(n))
		for k, y := range []float64{p.migrate.Seconds(), p.start.Seconds(), 1e6 / p.rps, float64(p.peak)} {
			c.metrics[k].ys = append(c.metrics[k].ys, y)
		}
	}
	return c, nil
}

// schemasPoint is one point of the schemas curve.
type schemasPoint struct {
	migrate, firstStart, start time.Duration
	rps, p99                   float64
	peak                       int64
}

// schemasPoint starts a gateway on a fresh database and waits for the
// schemas of every tenant; stops it and starts another on the same
// database; and runs GetConfig on it.
func (h *harness) schemasPoint(ctx context.Context) (schemasPoint, error) {
	var p schemasPoint
	n := len(h.slugs)
	first, err := h.startGateway(ctx, "")
	if err != nil {
		return p, err
	}
	defer func() { _ = first.drop() }()
	last, err := h.waitSchemas(ctx, first.dsn, 30*time.Minute)
	first.stop(false)
	if err != nil {
		return p, err
	}
	p.migrate, p.firstStart = last.Sub(first.Started), first.Ready
	if p.migrate < p.firstStart {
		// Migrated while the gateway came up (the database's clock counts
		// from the last migration's transaction start).
		p.migrate = p.firstStart
	}

	gw, err := h.startGateway(ctx, first.dsn)
	if err != nil {
		return p, err
	}
	defer gw.stop(false)
	p.start = gw.Ready
	callers := make([]benchkit.Caller, min(h.o.load.Conns, n))
	versions := make([]string, len(callers))
	for i := range callers {
		slug := h.slugs[i]
		conn, err := benchkit.WorkerConn(h.root, filepath.Join(h.dir, fmt.Sprintf("n%d-%s", n, slug)), slug, benchkit.AgentID(slug), gw.Addr)
		if err != nil {
			return p, err //nolint:wrapcheck // names the tenant
		}
		defer func() { _ = conn.Close() }()
		callers[i] = benchkit.Caller{AgentID: benchkit.AgentID(slug), Client: pb.NewAgentGatewayServiceClient(conn)}
		resp, err := callers[i].Client.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: callers[i].AgentID})
		if err != nil {
			return p, fmt.Errorf("first GetConfig of %s: %w", slug, err)
		}
		versions[i] = resp.ConfigVersion
	}
	if p.rps, p.p99, _, err = benchkit.Throughput(ctx, h.o.load, callers, versions); err != nil {
		return p, err //nolint:wrapcheck // names what failed
	}
	if p.peak, _, err = gw.Memory(); err != nil {
		return p, err //nolint:wrapcheck // names what it read
	}
	fmt.Printf("schemas: %d tenants: fresh schemas migrated %s after the gateway started (serving after %s); with the schemas: serving after %s; GetConfig not_modified %.0f req/s, p99 %.2f ms\n",
		n, p.migrate.Round(time.Millisecond), p.firstStart.Round(time.Millisecond), p.start.Round(time.Millisecond), p.rps, p.p99)
	fmt.Printf("RESULT curve=schemas schemas=%d migrate_s=%.2f start_s=%.3f first_start_s=%.3f getconfig_rps=%.0f getconfig_p99_ms=%.2f peak_rss_mib=%d\n",
		n, p.migrate.Seconds(), p.start.Seconds(), p.firstStart.Seconds(), p.rps, p.p99, p.peak)
	return p, nil
}
