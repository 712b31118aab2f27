package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workers/app"
	"github.com/serviceradar/sync-operator/workers/runner"
)

// TestSyncNow asks for runs with the sync-requested-at annotation on the
// whole system (API server, manager, gateway over mTLS, PostgreSQL, an
// in-cluster worker and an edge worker started from its onboarding bundle,
// the NetBox emulator), on sources polled once an hour:
//   - a request runs the source within seconds, in full by default, and
//     status.syncRequest records it Accepted with the worker's answer;
//   - the same value again (the object updated otherwise) runs nothing;
//   - an incremental request inside the rate limit is Deferred, with a
//     message, and runs incrementally once the limit has passed;
//   - an edge (OnPrem) worker, holding its stream with a CN identity, runs
//     its source on request too;
//   - a source whose worker is not connected ends NotConnected, and so does
//     a source naming a connected worker's SyncService that may not serve
//     it (its capabilities exclude the source's type): nothing reaches that
//     worker; a malformed time is Invalid with a message naming the
//     annotation.
func TestSyncNow(t *testing.T) {
	ctx := context.Background()
	const slug = "initech"
	netbox := netboxemu.New(netboxemu.Options{Seed: 12, Devices: 300})
	netboxURL := netbox.Start()
	defer netbox.Close()
	hour := &metav1.Duration{Duration: time.Hour}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "inventory"}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationNetBox, Endpoint: netboxURL, CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"},
		SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName},
		PollInterval:   hour, DiscoveryInterval: hour, NetBox: &v1alpha1.NetBoxSpec{ExcludeVirtualMachines: true},
		Queries: []v1alpha1.Query{{Label: "active", Query: "status=active"}}}}
	sys := startSystem(t, []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: slug, Labels: map[string]string{v1alpha1.TenantLabel: slug}}},
		&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "netbox"}, StringData: map[string]string{"api_token": netbox.V1Token()}},
		src,
	}, slug)
	c := sys.c

	// Two edge SyncServices: edge-1 runs a worker from its onboarding
	// bundle and serves Faker sources only, edge-2 never connects. Each has
	// a Faker source; a NetBox source names edge-1 too, which may not serve it.
	faker := func(name, ss string) *v1alpha1.IntegrationSource {
		return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: name}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationFaker, SyncServiceRef: v1alpha1.SyncServiceReference{Name: ss}, PollInterval: hour,
			Faker: &v1alpha1.FakerSpec{Devices: 50, Seed: 3}}}
	}
	edgeSrc, absentSrc := faker("edge-lab", "edge-1"), faker("absent-lab", "edge-2")
	refusedSrc := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "refused-inventory"}, Spec: *src.Spec.DeepCopy()}
	refusedSrc.Spec.SyncServiceRef = v1alpha1.SyncServiceReference{Name: "edge-1"}
	for _, o := range []client.Object{
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "edge-1"},
			Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, GatewayAddress: sys.gw.cfg.Listen,
				Capabilities: []string{string(v1alpha1.IntegrationFaker)}}},
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "edge-2"},
			Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, GatewayAddress: sys.gw.cfg.Listen}},
		edgeSrc, absentSrc, refusedSrc,
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}
	runEdgeWorker(t, c, slug, "edge-1")

	// request sets the annotations.
	request := func(s *v1alpha1.IntegrationSource, at, mode string) {
		t.Helper()
		ann := map[string]any{v1alpha1.SyncRequestedAtAnnotation: at, v1alpha1.SyncModeAnnotation: nil}
		if mode != "" {
			ann[v1alpha1.SyncModeAnnotation] = mode
		}
		p, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
		if err := c.Patch(ctx, s, client.RawPatch(types.MergePatchType, p)); err != nil {
			t.Fatal(err)
		}
	}
	// await waits until s's status satisfies ok.
	await := func(what string, s *v1alpha1.IntegrationSource, within time.Duration, ok func(v1alpha1.IntegrationSourceStatus) bool) v1alpha1.IntegrationSourceStatus {
		t.Helper()
		var st v1alpha1.IntegrationSourceStatus
		test.Eventually(t, what, within, func() bool { st = sys.status(s); return ok(st) })
		return st
	}
	// outcome is true once status records the request of at with result r.
	outcome := func(at time.Time, r v1alpha1.SyncRequestResult) func(v1alpha1.IntegrationSourceStatus) bool {
		return func(st v1alpha1.IntegrationSourceStatus) bool {
			q := st.SyncRequest
			return q != nil && q.RequestedAt != nil && q.RequestedAt.Time.Equal(at) && q.Result == r
		}
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }

	st := await("the first run", src, 3*time.Minute, func(st v1alpha1.IntegrationSourceStatus) bool { return st.LastRun != nil })
	run1 := st.LastRun.ID
	await("the edge source's first run", edgeSrc, 3*time.Minute, func(st v1alpha1.IntegrationSourceStatus) bool { return st.LastRun != nil })

	// A request runs the source at once, in full by default.
	t1 := time.Now().UTC().Truncate(time.Second)
	request(src, rfc(t1), "")
	st = await("the requested run", src, time.Minute, func(st v1alpha1.IntegrationSourceStatus) bool {
		return outcome(t1, v1alpha1.SyncRequestAccepted)(st) && st.LastRun != nil && st.LastRun.ID != run1
	})
	run2, q := st.LastRun, st.SyncRequest
	if run2.Mode != v1alpha1.SyncModeFull || run2.Result != v1alpha1.SyncResultSuccess || q.Mode != v1alpha1.SyncModeFull ||
		q.DeliveredAt == nil || q.ObservedAt == nil || !strings.Contains(q.Message, "a full run of "+slug+"/inventory") {
		t.Fatalf("the requested run %+v, request %+v: want a full Success, delivered, with the worker's answer", run2, q)
	}
	firstDelivered := q.DeliveredAt.Time

	// The same value again, with another change to the object: nothing.
	if err := c.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"example.com/touched":"yes"}}}`))); err != nil {
		t.Fatal(err)
	}
	// A second request inside the rate limit waits, then runs as asked.
	t2 := time.Now().UTC().Truncate(time.Second)
	if !t2.After(t1) {
		t2 = t1.Add(time.Second)
	}
	request(src, rfc(t2), "incremental")
	st = await("the second request deferred", src, time.Minute, outcome(t2, v1alpha1.SyncRequestDeferred))
	if q := st.SyncRequest; !strings.Contains(q.Message, "rate limited") || q.Mode != v1alpha1.SyncModeIncremental ||
		q.DeliveredAt == nil || !q.DeliveredAt.Time.Equal(firstDelivered) {
		t.Fatalf("the deferred request: %+v", q)
	}
	// Meanwhile: the edge worker runs its source on request, the source of
	// the absent one is not delivered, and a malformed time is refused.
	edgeRun := sys.status(edgeSrc).LastRun.ID
	te := time.Now().UTC().Truncate(time.Second)
	request(edgeSrc, rfc(te), "")
	request(absentSrc, rfc(te), "")
	request(refusedSrc, rfc(te), "")
	st = await("the edge source's requested run", edgeSrc, time.Minute, func(st v1alpha1.IntegrationSourceStatus) bool {
		return outcome(te, v1alpha1.SyncRequestAccepted)(st) && st.LastRun != nil && st.LastRun.ID != edgeRun
	})
	if st.LastRun.Result != v1alpha1.SyncResultSuccess || st.LastRun.Mode != v1alpha1.SyncModeFull {
		t.Fatalf("the edge source's requested run: %+v", st.LastRun)
	}

	st = await("the deferred request delivered", src, 2*time.Minute, func(st v1alpha1.IntegrationSourceStatus) bool {
		return outcome(t2, v1alpha1.SyncRequestAccepted)(st) && st.LastRun != nil && st.LastRun.ID != run2.ID
	})
	run3 := st.LastRun
	if run3.Mode != v1alpha1.SyncModeIncremental || run3.Result != v1alpha1.SyncResultSuccess ||
		st.SyncRequest.DeliveredAt.Sub(firstDelivered) < v1alpha1.SyncRequestInterval {
		t.Fatalf("the deferred run %+v, request %+v: want an incremental Success delivered %s after the first", run3, st.SyncRequest, v1alpha1.SyncRequestInterval)
	}
	// Exactly the runs asked for: the repeated value ran nothing.
	if len(st.History) != 3 || st.History[0].ID != run3.ID || st.History[1].ID != run2.ID || st.History[2].ID != run1 {
		t.Fatalf("history %+v, want the runs %s, %s, %s", st.History, run3.ID, run2.ID, run1)
	}

	st = await("the absent worker's request", absentSrc, 3*time.Minute, outcome(te, v1alpha1.SyncRequestNotConnected))
	if q := st.SyncRequest; !strings.Contains(q.Message, "CN=edge-2.default."+slug+".serviceradar") || q.DeliveredAt != nil || st.LastRun != nil {
		t.Fatalf("the absent worker's request: %+v, last run %+v", q, st.LastRun)
	}

	st = await("the refused source's request", refusedSrc, time.Minute, outcome(te, v1alpha1.SyncRequestNotConnected))
	if q := st.SyncRequest; !strings.Contains(q.Message, `does not have capability "netbox"`) || q.DeliveredAt != nil || st.LastRun != nil {
		t.Fatalf("the request of a source its SyncService may not serve: %+v, last run %+v", q, st.LastRun)
	}

	request(src, "yesterday", "")
	st = await("the malformed request", src, time.Minute, func(st v1alpha1.IntegrationSourceStatus) bool {
		return st.SyncRequest != nil && st.SyncRequest.Result == v1alpha1.SyncRequestInvalid
	})
	if q := st.SyncRequest; !strings.Contains(q.Message, v1alpha1.SyncRequestedAtAnnotation) || !strings.Contains(q.Message, `"yesterday"`) ||
		st.LastRun.ID != run3.ID {
		t.Fatalf("the malformed request: %+v", q)
	}
	out, err := sys.env.Kubectl("describe", "integrationsource", "-n", slug, "inventory")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Sync Request:") {
		t.Fatalf("kubectl describe lacks the sync request:\n%s", out)
	}
}

// runEdgeWorker runs the worker of an OnPrem SyncService from its
// onboarding bundle, as an edge site would, until the test ends.
func runEdgeWorker(t *testing.T, c client.Client, ns, name string) {
	t.Helper()
	ctx := context.Background()
	sec := &corev1.Secret{}
	test.Eventually(t, name+"'s onboarding bundle", time.Minute, func() bool {
		return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-onboarding"}, sec) == nil
	})
	boot, err := bootstrap.Parse(sec.Data["config.json"])
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, key), sec.Data[key], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	serverName := boot.Identity.ServerName
	boot.Identity = bootstrap.FileIdentity(dir)
	boot.Identity.ServerName = serverName
	raw, _ := boot.JSON()
	bootFile := filepath.Join(dir, "config.json")
	if err := os.WriteFile(bootFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(wctx, app.Config{BootstrapFile: bootFile, Version: "e2e", Log: testr.New(t).WithName("edge-" + name),
			Runner: runner.Options{SegmentDevices: 500}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge worker %s: %v", name, err)
		}
	})
}
