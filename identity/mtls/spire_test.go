package mtls_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	"github.com/serviceradar/sync-operator/test/spiretest"
)

// TestSPIREWorkloadAPI runs real spire-server and spire-agent processes and
// uses SVIDs from the Workload API on both sides of real mTLS gRPC calls.
func TestSPIREWorkloadAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	begin := time.Now()
	spire, err := spiretest.Start(ctx, identity.DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spire-server and spire-agent healthy in %s", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := spire.Stop(); err != nil {
			t.Error(err)
		}
	})
	const rotatingTTL = 12 * time.Second
	gwID := spiffeID(t, "gateway", "platform", "gw-0")
	syncID := spiffeID(t, "sync", "acme", "worker-1")
	robotID := spiffeID(t, "robot", "acme", "r1")
	rotatingID := spiffeID(t, "sync", "acme", "rotating")
	for id, ttl := range map[spiffeid.ID]time.Duration{gwID: 0, syncID: 0, robotID: 0, rotatingID: rotatingTTL} {
		if err := spire.RegisterWorkload(ctx, id, ttl); err != nil {
			t.Fatal(err)
		}
	}
	source := func(id spiffeid.ID) mtls.Source {
		t.Helper()
		src, err := spire.Source(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = src.Close() })
		return mtls.NewWorkloadSource(src, nil)
	}
	srv := startServer(t, source(gwID))
	t.Logf("first SVID served %s after start", time.Since(begin).Round(time.Millisecond))

	t.Run("sync SVID is classified", func(t *testing.T) {
		if _, err := call(t, srv.addr, source(syncID), mtls.ServerExpectation{SPIFFEID: gwID}); err != nil {
			t.Fatal(err)
		}
		got := srv.handled()
		id := got[len(got)-1]
		if id.SPIFFEID != syncID || id.Class != identity.ClassPlatform || id.ComponentType != identity.ComponentSync ||
			id.TenantSlug != "acme" || id.Partition != "default" || id.ComponentID != "worker-1" {
			t.Fatalf("classified as %+v", id)
		}
	})

	t.Run("unknown component type is refused", func(t *testing.T) {
		before := len(srv.handled())
		if _, err := call(t, srv.addr, source(robotID), mtls.ServerExpectation{}); err == nil {
			t.Fatal("an SVID with component type robot was served")
		}
		if len(srv.handled()) != before {
			t.Fatal("a handler ran for a refused SVID")
		}
	})

	t.Run("short-lived SVID rotates without failing calls", func(t *testing.T) {
		client := source(rotatingID)
		before := len(srv.callerSerials())
		deadline := time.Now().Add(rotatingTTL + rotatingTTL/2)
		calls := 0
		for time.Now().Before(deadline) {
			if _, err := call(t, srv.addr, client, mtls.ServerExpectation{SPIFFEID: gwID}); err != nil {
				t.Fatalf("call %d failed during rotation: %v", calls, err)
			}
			calls++
			time.Sleep(250 * time.Millisecond)
		}
		distinct := map[string]bool{}
		for _, s := range srv.callerSerials()[before:] {
			distinct[s] = true
		}
		t.Logf("%d calls over %s saw %d distinct SVIDs", calls, rotatingTTL+rotatingTTL/2, len(distinct))
		if len(distinct) < 2 {
			t.Fatalf("the SVID never rotated in %d calls", calls)
		}
	})

	// The gateway and the worker open their Workload API source with
	// DialWorkloadAPI: each gets the SVID it names among the several this
	// process is entitled to, and a clear error when no agent answers.
	t.Run("DialWorkloadAPI picks the named SVID", func(t *testing.T) {
		for _, id := range []spiffeid.ID{gwID, syncID, robotID} {
			src, err := mtls.DialWorkloadAPI(ctx, spire.WorkloadAPIAddr, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := src.Certificate()
			if cerr := src.Close(); cerr != nil {
				t.Error(cerr)
			}
			if err != nil {
				t.Fatal(err)
			}
			if uris := cert.Leaf.URIs; len(uris) != 1 || uris[0].String() != id.String() {
				t.Fatalf("asked for %s, got an SVID for %v", id, uris)
			}
		}
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		missing := "unix://" + t.TempDir() + "/none.sock"
		if _, err := mtls.DialWorkloadAPI(short, missing, syncID, nil); err == nil || !strings.Contains(err.Error(), missing) {
			t.Fatalf("no agent at %s: error %v, want one naming the address", missing, err)
		}
	})
}
