package e2e_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/gateway/events"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/netboxemu"
)

// scrape reads the gateway's metrics.
func scrape(t *testing.T, addr string) map[string][]*model.Sample {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics") //nolint:noctx // a test scrape
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	vec, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{Timestamp: model.Now()},
		mustFamilies(t, string(body))...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*model.Sample{}
	for _, s := range vec {
		name := string(s.Metric[model.MetricNameLabel])
		out[name] = append(out[name], s)
	}
	return out
}

func mustFamilies(t *testing.T, body string) []*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	return out
}

// value is the value of the series name with exactly the labels want
// (others may be present), and whether there is one.
func value(m map[string][]*model.Sample, name string, want map[string]string) (float64, bool) {
	for _, s := range m[name] {
		match := true
		for k, v := range want {
			if string(s.Metric[model.LabelName(k)]) != v {
				match = false
			}
		}
		if match {
			return float64(s.Value), true
		}
	}
	return 0, false
}

// gatewayEvents are the gateway's events about an object of a kind.
func gatewayEvents(t *testing.T, c client.Client, ns, kind, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == kind && e.Regarding.Name == name && e.ReportingController == events.Component {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for the gateway's event of reason and type about an object.
func waitEvent(t *testing.T, c client.Client, ns, kind, name, reason, typ string) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	test.Eventually(t, fmt.Sprintf("a %s event %s on %s %s/%s", typ, reason, kind, ns, name), time.Minute, func() bool {
		for _, e := range gatewayEvents(t, c, ns, kind, name) {
			if e.Reason == reason && e.Type == typ {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// TestEventsAndMetrics runs a NetBox source on the whole system (API
// server, manager, gateway over mTLS with its shipped RBAC, PostgreSQL, a
// worker, the emulator) through a run that changes devices, a held
// retraction, its approval and a failed run, and a revoked edge certificate,
// and checks what the gateway tells about each:
//   - its events (events.k8s.io, reporting controller sync-gateway) by reason,
//     type and regarding object, none of them naming the source's
//     credential, its endpoint or the other tenant;
//   - its metrics by name and labels (tenant, namespace, name, type), per
//     source and per tenant, and the source's series gone once it is deleted.
func TestEventsAndMetrics(t *testing.T) {
	ctx := context.Background()
	const slug, other = "initech", "umbrella"
	netbox := netboxemu.New(netboxemu.Options{Seed: 5, Devices: 300})
	netboxURL := netbox.Start()
	defer netbox.Close()
	active, err := netbox.MatchingDeviceIDs("status=active")
	if err != nil {
		t.Fatal(err)
	}
	hour := &metav1.Duration{Duration: time.Hour}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "inventory"}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationNetBox, Endpoint: netboxURL, CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"},
		SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName},
		PollInterval:   hour, DiscoveryInterval: hour, PageSize: 100,
		NetBox:  &v1alpha1.NetBoxSpec{ExcludeVirtualMachines: true},
		Queries: []v1alpha1.Query{{Label: "active", Query: "status=active"}}}}
	otherSrc := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "lab"}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: 20}, PollInterval: hour,
		SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}}}
	var objs []client.Object
	for _, s := range []string{slug, other} {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s, Labels: map[string]string{v1alpha1.TenantLabel: s}}},
			&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: s}, Spec: v1alpha1.TenantSpec{Slug: s}})
	}
	objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "netbox"}, StringData: map[string]string{"api_token": netbox.V1Token()}},
		src, otherSrc)
	sys := startSystem(t, objs, slug, other)
	c := sys.c
	edge := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "edge"},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, GatewayAddress: sys.gw.cfg.Listen}}
	if err := c.Create(ctx, edge); err != nil {
		t.Fatal(err)
	}
	// The gateway again, now serving metrics.
	metricsAddr, err := gatewayproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	sys.gw.stop()
	sys.gw.cfg.Metrics = metricsAddr
	sys.gw.start()

	labels := map[string]string{"tenant": slug, "namespace": slug, "name": "inventory", "type": "netbox"}
	with := func(extra ...string) map[string]string {
		out := map[string]string{}
		for k, v := range labels {
			out[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			out[extra[i]] = extra[i+1]
		}
		return out
	}
	patch := func(p string) {
		t.Helper()
		if err := c.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	next := func(what, prev string) v1alpha1.IntegrationSourceStatus {
		t.Helper()
		var st v1alpha1.IntegrationSourceStatus
		test.Eventually(t, what, 3*time.Minute, func() bool {
			st = sys.status(src)
			return st.LastRun != nil && st.LastRun.ID != prev
		})
		return st
	}

	// Run 1 created every device: a Normal RunCompleted.
	n := len(active)
	run1 := next("the first run", "")
	if run1.LastRun.Result != v1alpha1.SyncResultSuccess || run1.LastRun.Counts.Created != int64(n) {
		t.Fatalf("the first run: %+v", run1.LastRun)
	}
	ev := waitEvent(t, c, slug, "IntegrationSource", "inventory", events.ReasonRunCompleted, corev1.EventTypeNormal)
	if ev.Regarding.UID != src.UID || ev.Action != events.ActionSync || !strings.Contains(ev.Note, run1.LastRun.ID) ||
		!strings.Contains(ev.Note, fmt.Sprintf("created %d", n)) {
		t.Fatalf("RunCompleted event %+v", ev)
	}
	// The same state on the new gateway, read from status and the store.
	test.Eventually(t, "the source's state series", time.Minute, func() bool {
		m := scrape(t, metricsAddr)
		av, ok1 := value(m, "sync_source_devices", with("state", "available"))
		res, ok2 := value(m, "sync_source_last_run_result", with("result", "Success"))
		_, ok3 := value(m, "sync_source_last_success_timestamp_seconds", labels)
		poll, ok4 := value(m, "sync_source_poll_interval_seconds", labels)
		return ok1 && ok2 && ok3 && ok4 && av == float64(n) && res == 1 && poll == 3600
	})

	// Run 2: 90% of the inventory gone, held: a Warning RetractionHeld.
	gone := active[:n*9/10]
	netbox.DeleteDevices(gone...)
	patch(`{"spec":{"pageSize":99}}`)
	run2 := next("the held run", run1.LastRun.ID)
	if run2.LastRun.Result != v1alpha1.SyncResultHeldRetraction {
		t.Fatalf("the 90%% run: %+v", run2.LastRun)
	}
	ev = waitEvent(t, c, slug, "IntegrationSource", "inventory", events.ReasonRetractionHeld, corev1.EventTypeWarning)
	if !strings.Contains(ev.Note, run2.LastRun.ID) || !strings.Contains(ev.Note, fmt.Sprintf("retract %d of the source's %d", len(gone), n)) ||
		!strings.Contains(ev.Note, v1alpha1.ApproveRetractionAnnotation) {
		t.Fatalf("RetractionHeld event %+v", ev)
	}
	test.Eventually(t, "the held retraction's series", time.Minute, func() bool {
		m := scrape(t, metricsAddr)
		held, _ := value(m, "sync_source_retraction_held_devices", labels)
		res, _ := value(m, "sync_source_last_run_result", with("result", "HeldRetraction"))
		runs, _ := value(m, "sync_source_runs_total", with("result", "HeldRetraction"))
		unchanged, _ := value(m, "sync_source_changes_total", with("kind", "unchanged"))
		return held == float64(len(gone)) && res == 1 && runs == 1 && unchanged == float64(n-len(gone))
	})

	// The approval releases it: a Normal RetractionReleased, the devices unavailable.
	patch(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.ApproveRetractionAnnotation, run2.LastRun.ID))
	ev = waitEvent(t, c, slug, "IntegrationSource", "inventory", events.ReasonRetractionReleased, corev1.EventTypeNormal)
	if !strings.Contains(ev.Note, fmt.Sprintf("retracted %d devices", len(gone))) {
		t.Fatalf("RetractionReleased event %+v", ev)
	}
	test.Eventually(t, "the released retraction's series", time.Minute, func() bool {
		m := scrape(t, metricsAddr)
		held, ok := value(m, "sync_source_retraction_held_devices", labels)
		retracted, _ := value(m, "sync_source_changes_total", with("kind", "retracted"))
		unavail, _ := value(m, "sync_source_devices", with("state", "unavailable"))
		avail, _ := value(m, "sync_source_devices", with("state", "available"))
		return ok && held == 0 && retracted == float64(len(gone)) && unavail == float64(len(gone)) && avail == float64(n-len(gone))
	})

	// Run 3: the token expired: a Warning RunFailed.
	netbox.ExpireTokens()
	patch(`{"spec":{"pageSize":98}}`)
	run3 := next("the failed run", run2.LastRun.ID)
	if run3.LastRun.Result != v1alpha1.SyncResultFailed {
		t.Fatalf("the run with an expired token: %+v", run3.LastRun)
	}
	ev = waitEvent(t, c, slug, "IntegrationSource", "inventory", events.ReasonRunFailed, corev1.EventTypeWarning)
	if !strings.Contains(ev.Note, run3.LastRun.ID) {
		t.Fatalf("RunFailed event %+v", ev)
	}
	test.Eventually(t, "the failed run's series", time.Minute, func() bool {
		m := scrape(t, metricsAddr)
		res, _ := value(m, "sync_source_last_run_result", with("result", "Failed"))
		runs, _ := value(m, "sync_source_runs_total", with("result", "Failed"))
		_, hasDuration := value(m, "sync_source_run_duration_seconds_count", labels)
		return res == 1 && runs == 1 && hasDuration
	})

	// A revoked edge certificate that names the SyncService: a Warning on it.
	old := onboarding(t, c, slug, "edge")
	if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "edge-onboarding"}}); err != nil {
		t.Fatal(err)
	}
	test.Eventually(t, "the old edge certificate refused as revoked", 2*time.Minute, func() bool {
		err := helloWith(t, sys.gw.cfg.Listen, old)
		return status.Code(err) == codes.PermissionDenied && strings.Contains(status.Convert(err).Message(), "revoked")
	})
	ev = waitEvent(t, c, slug, "SyncService", "edge", events.ReasonCertificateRefused, corev1.EventTypeWarning)
	if ev.Action != events.ActionAuthorize || !strings.Contains(ev.Note, "edgeIdentitySince") {
		t.Fatalf("CertificateRefused event %+v", ev)
	}

	// Per tenant and per SyncService.
	m := scrape(t, metricsAddr)
	for _, want := range []struct {
		name   string
		labels map[string]string
	}{
		{"sync_gateway_ingest_segments_total", map[string]string{"tenant": slug, "outcome": "applied"}},
		{"sync_gateway_ingest_bytes_total", map[string]string{"tenant": slug}},
		{"sync_gateway_apply_duration_seconds_count", map[string]string{"tenant": slug}},
		{"sync_syncservice_phase", map[string]string{"tenant": identity.DefaultPlatformSlug, "namespace": operatorNS, "name": controllers.PlatformSyncName, "phase": "Online"}},
		{"sync_syncservice_last_heartbeat_timestamp_seconds", map[string]string{"tenant": identity.DefaultPlatformSlug, "name": controllers.PlatformSyncName}},
		{"sync_edge_certificate_expiry_timestamp_seconds", map[string]string{"tenant": slug, "namespace": slug, "syncservice": "edge"}},
		{"sync_source_devices", map[string]string{"tenant": other, "namespace": other, "name": "lab", "type": "faker", "state": "available"}},
	} {
		if v, ok := value(m, want.name, want.labels); !ok || v <= 0 {
			t.Errorf("%s%v = %v (present %v), want a positive value", want.name, want.labels, v, ok)
		}
	}

	// No event names the credential, the endpoint or the other tenant.
	var all eventsv1.EventList
	if err := c.List(ctx, &all); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(netboxURL, "http://")
	for _, e := range all.Items {
		if e.ReportingController != events.Component {
			continue
		}
		text := e.Note + " " + e.Reason + " " + e.Regarding.Name
		for _, secret := range []string{netbox.V1Token(), netboxURL, host} {
			if strings.Contains(text, secret) {
				t.Errorf("event %s/%s (%s) carries the source's credential or endpoint: %s", e.Namespace, e.Name, e.Reason, e.Note)
			}
		}
		if e.Namespace == slug && strings.Contains(text, other) || e.Namespace == other && strings.Contains(text, slug) {
			t.Errorf("event %s/%s names the other tenant: %s", e.Namespace, e.Name, e.Note)
		}
	}

	// Deleting the source removes its series, counters included.
	if err := c.Delete(ctx, src); err != nil {
		t.Fatal(err)
	}
	test.Eventually(t, "the deleted source's series gone", time.Minute, func() bool {
		m := scrape(t, metricsAddr)
		for name, samples := range m {
			if !strings.HasPrefix(name, "sync_source_") {
				continue
			}
			for _, s := range samples {
				if s.Metric["namespace"] == slug && s.Metric["name"] == "inventory" {
					return false
				}
			}
		}
		_, otherLeft := value(m, "sync_source_poll_interval_seconds", map[string]string{"namespace": other, "name": "lab"})
		return otherLeft
	})
}

// edgeFiles are an edge certificate's PEM files.
type edgeFiles struct{ cert, key, ca string }

// onboarding saves the current edge certificate of an OnPrem SyncService.
func onboarding(t *testing.T, c client.Client, ns, name string) edgeFiles {
	t.Helper()
	sec := &corev1.Secret{}
	test.Eventually(t, name+"'s onboarding bundle", time.Minute, func() bool {
		return c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name + "-onboarding"}, sec) == nil
	})
	dir := t.TempDir()
	f := edgeFiles{cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), ca: filepath.Join(dir, "ca.crt")}
	for file, key := range map[string]string{f.cert: corev1.TLSCertKey, f.key: corev1.TLSPrivateKeyKey, f.ca: "ca.crt"} {
		if err := os.WriteFile(file, sec.Data[key], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Wait out the second it was issued in: the gateway compares whole seconds.
	block, _ := pem.Decode(sec.Data[corev1.TLSCertKey])
	if block == nil {
		t.Fatal("the onboarding bundle has no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if wait := time.Until(cert.NotBefore.Add(time.Second)); wait > 0 && wait < time.Minute {
		time.Sleep(wait)
	}
	return f
}

// helloWith says Hello to the gateway with an edge certificate.
func helloWith(t *testing.T, addr string, f edgeFiles) error {
	t.Helper()
	classifier, err := identity.NewClassifier("", "")
	if err != nil {
		t.Fatal(err)
	}
	src, err := mtls.NewFileSource(f.cert, f.key, f.ca, spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	block, _ := pem.Decode(mustRead(t, f.cert))
	cert, _ := x509.ParseCertificate(block.Bytes)
	id, _, _ := strings.Cut(cert.Subject.CommonName, ".")
	_, err = pb.NewAgentGatewayServiceClient(conn).Hello(ctx, &pb.AgentHelloRequest{AgentId: id})
	return err //nolint:wrapcheck // the gateway's answer
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
