package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/serviceradar/sync-operator/hack/benchkit"
	pb "github.com/serviceradar/sync-operator/proto"
)

// inventoryCurve streams one source's inventory of each size of o.sizes, a
// full first run and then a churn run, each size its own tenant on a fresh
// database and gateway.
func inventoryCurve(ctx context.Context, o options) (curve, error) {
	h, err := newHarness(ctx, o, "inventory")
	if err != nil {
		return curve{}, err
	}
	defer h.stop()
	for _, n := range o.sizes {
		if err := h.addTenants(ctx, []string{fmt.Sprintf("inv-%d", n)}, n); err != nil {
			return curve{}, err
		}
	}
	c := curve{name: "inventory", xKey: "devices", xName: "devices of the source",
		title: fmt.Sprintf("Inventory of one source: full run, then a run with %d%% of primary IPs swapped", o.churn),
		metrics: []metric{
			{key: "full", label: "full run (s)", perUnit: true},
			{key: "devices_per_s", label: "full run devices/s"},
			{key: "churn", label: "churn cycle (s)", perUnit: true},
			{key: "rss", label: "gateway peak RSS (MiB)"},
		}}
	for i, n := range o.sizes {
		full, churn, peak, err := h.inventoryPoint(ctx, h.slugs[i], n)
		if err != nil {
			return curve{}, fmt.Errorf("an inventory of %d devices: %w", n, err)
		}
		c.xs = append(c.xs, float64(n))
		for k, y := range []float64{full.Seconds(), float64(n) / full.Seconds(), churn.Seconds(), float64(peak)} {
			c.metrics[k].ys = append(c.metrics[k].ys, y)
		}
	}
	return c, nil
}

// inventoryPoint streams n devices of tenant slug's source on a fresh
// gateway and database, then the churn run.
func (h *harness) inventoryPoint(ctx context.Context, slug string, n int) (full, churn time.Duration, peak int64, err error) {
	gw, err := h.startGateway(ctx, "")
	if err != nil {
		return 0, 0, 0, err
	}
	defer gw.stop(true)
	if _, err := h.waitSchemas(ctx, gw.dsn, 10*time.Minute); err != nil {
		return 0, 0, 0, err
	}
	agentID := benchkit.AgentID(slug)
	conn, err := benchkit.WorkerConn(h.root, filepath.Join(h.dir, slug), slug, agentID, gw.Addr)
	if err != nil {
		return 0, 0, 0, err //nolint:wrapcheck // names the tenant
	}
	defer func() { _ = conn.Close() }()
	c := pb.NewAgentGatewayServiceClient(conn)
	src, err := benchkit.OnlySource(ctx, c, agentID)
	if err != nil {
		return 0, 0, 0, err //nolint:wrapcheck // names the tenant
	}
	inv := benchkit.NewInventory(n)
	for run, took := range []*time.Duration{&full, &churn} {
		if run == 1 {
			inv.Churn(h.o.churn)
		}
		cpu0, err := benchkit.ReadCPU(gw.Process)
		if err != nil {
			return 0, 0, 0, err //nolint:wrapcheck // names what it read
		}
		if *took, err = inv.Stream(ctx, c, agentID, src, h.o.segment); err != nil {
			return 0, 0, 0, fmt.Errorf("streaming run %d: %w", run+1, err)
		}
		cpu1, err := benchkit.ReadCPU(gw.Process)
		if err != nil {
			return 0, 0, 0, err //nolint:wrapcheck // names what it read
		}
		what := "full run"
		if run == 1 {
			what = fmt.Sprintf("churn run (%d%% of primary IPs swapped)", h.o.churn)
		}
		fmt.Printf("inventory: %d devices, %s in %s: %.0f devices/s (CPU: %s)\n", n, what, took.Round(time.Millisecond), float64(n)/took.Seconds(), cpu1.Since(cpu0))
	}
	if err := h.checkDevices(ctx, gw.dsn, slug, n); err != nil {
		return 0, 0, 0, err
	}
	if peak, _, err = gw.Memory(); err != nil {
		return 0, 0, 0, err //nolint:wrapcheck // names what it read
	}
	fmt.Printf("RESULT curve=inventory devices=%d devices_per_s=%.0f full_s=%.2f churn_cycle_ms=%d peak_rss_mib=%d rss_limit_mib=%d\n",
		n, float64(n)/full.Seconds(), full.Seconds(), churn.Milliseconds(), peak, h.o.memoryLimitMiB)
	return full, churn, peak, nil
}
