package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/gateway/server"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/wire/results"
)

// upstreamDevice is a device as upstream's agent sync runtime sends it: no
// integration_source_uid, the integration in `source`, the legacy
// `"is_available": false`, the OS in metadata, and sync_meta when run is set.
func upstreamDevice(integration string, id int, run *results.DeviceMeta) results.DeviceUpdate {
	no := false
	d := results.DeviceUpdate{DeviceID: fmt.Sprintf("default:10.188.%d.%d", id>>8&255, id&255), IP: fmt.Sprintf("10.188.%d.%d", id>>8&255, id&255),
		Source: integration, AgentID: "upstream-agent", GatewayID: "upstream-gw", ServiceType: "sync", ServiceID: "sync",
		Timestamp: "2020-01-02T03:04:05Z", IsAvailable: &no, Hostname: fmt.Sprintf("host-%d", id),
		Metadata: map[string]string{integration + "_device_id": fmt.Sprint(id), "operating_system": "Windows 11"}}
	if run != nil {
		m := *run
		d.SyncMeta = &m
	}
	return d
}

// upstreamCall is a call in upstream's array form, one chunk per list of
// devices; the sync_meta of each device (when it has one) is set to its
// chunk, and is_final on the last device of its run.
func upstreamCall(t *testing.T, agent string, perChunk [][]results.DeviceUpdate) []*pb.GatewayStatusChunk {
	t.Helper()
	last := map[string]*results.DeviceMeta{}
	for i, devs := range perChunk {
		for j := range devs {
			if m := devs[j].SyncMeta; m != nil {
				m.ChunkIndex, m.TotalChunks = i, len(perChunk)
				last[m.SyncRunID] = m
			}
		}
	}
	for _, m := range last {
		m.IsFinal = true
	}
	var out []*pb.GatewayStatusChunk
	for i, devs := range perChunk {
		raw, err := json.Marshal(devs)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, chunk(agent, i, len(perChunk), i == len(perChunk)-1, raw))
	}
	return out
}

// bigRun is the first Armis id of checkUpstream's large run, whose devices
// checkAgents sweeps.
const bigRun = 900000

// checkUpstream runs inside TestConfigPlane (issue 18, item 3): upstream's
// array form is attributed to the worker's sources, split per source, run
// by its per-device sync_meta to completion (status, retraction), applied
// in windows as it arrives, idempotent when sent again, and refused, naming
// the device, when a device cannot be attributed.
func checkUpstream(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The platform worker of acme gets a second source, a NetBox one, so
	// that its calls can merge sources and a device can fit both.
	nb := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "acme-upstream-netbox", Namespace: w.ns["acme"]}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationNetBox, Endpoint: "https://acme-upstream-netbox.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"},
		SyncServiceRef:    v1alpha1.SyncServiceReference{Namespace: w.ns["platform"], Name: "platform-sync"},
		MaxRetractPercent: new(int32(100))}} // retracts freely: the brake has its own test
	create(t, nb)
	defer func() { _ = env.Client.Delete(context.Background(), nb) }()
	const worker = "platform-sync-acme"
	cert := svid(t, w, "sync/acme/default/"+worker)
	m := server.NewMetrics()
	_, addr := w.serve("gw-upstream", m, func(o *server.Options) {
		// Small windows, so that every call here is applied in several.
		o.Limits = ingest.DefaultLimits
		o.Limits.WindowDevices = 3
	})
	c := w.clientOf(t, addr, cert)
	test.Eventually(t, "the worker's bundle to carry both sources", time.Minute, func() bool {
		cfg, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: worker})
		return err == nil && strings.Contains(string(cfg.GetConfigJson()), "acme-upstream-netbox")
	})
	ss := &v1alpha1.SyncService{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns["platform"], Name: "platform-sync"}, ss); err != nil {
		t.Fatal(err)
	}
	armis, netbox := &v1alpha1.IntegrationSource{}, &v1alpha1.IntegrationSource{}
	get := func(src *v1alpha1.IntegrationSource, name string) *v1alpha1.IntegrationSource {
		t.Helper()
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns["acme"], Name: name}, src); err != nil {
			t.Fatal(err)
		}
		return src
	}
	available := func(sourceUID string) int {
		t.Helper()
		var n int
		if err := w.store.Pool().QueryRow(ctx, "SELECT count(*) FROM tenant_acme.source_devices WHERE integration_source_uid = $1 AND available", sourceUID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	run := func(id string, total int) *results.DeviceMeta {
		return &results.DeviceMeta{SyncServiceID: string(ss.UID), SyncRunID: id, TotalDevices: total}
	}

	t.Run("a call merging two sources is split per source, and each run completes, updates status and retracts", func(t *testing.T) {
		windows := testutil.ToFloat64(m.StatusWindows)
		var perChunk [][]results.DeviceUpdate
		for i := range 4 {
			perChunk = append(perChunk, []results.DeviceUpdate{
				upstreamDevice("armis", 60000+2*i, run("up-armis-1", 8)), upstreamDevice("armis", 60001+2*i, run("up-armis-1", 8)),
				upstreamDevice("netbox", 61000+2*i, run("up-netbox-1", 8)), upstreamDevice("netbox", 61001+2*i, run("up-netbox-1", 8)),
			})
		}
		call := upstreamCall(t, worker, perChunk)
		if err := stream(ctx, c, chunks(call...)); err != nil {
			t.Fatalf("an upstream call: %v", err)
		}
		for _, src := range []*v1alpha1.IntegrationSource{get(armis, "acme-armis"), get(netbox, "acme-upstream-netbox")} {
			if src.Status.LastSyncResult != v1alpha1.SyncResultSuccess || src.Status.DevicesDiscovered != 8 || src.Status.LastRunID == "" {
				t.Fatalf("%s after its upstream run: %+v", src.Name, src.Status)
			}
		}
		// The Armis run was a full fetch: the devices acme-armis reported
		// before it (the other checks') are retracted.
		if n := available(string(armis.UID)); n != 8 {
			t.Fatalf("acme-armis holds %d available devices after a full upstream run of 8", n)
		}
		if got := testutil.ToFloat64(m.StatusWindows) - windows; got < 4 {
			t.Fatalf("the call was applied in %v windows, want several", got)
		}
		// Legacy "is_available": false does not mark devices unavailable,
		// and operating_system lands in os.
		var down, withOS int
		if err := w.store.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT is_available), count(*) FILTER (WHERE os = 'Windows 11')
			FROM tenant_acme.ocsf_devices WHERE ip LIKE '10.188.%'`).Scan(&down, &withOS); err != nil {
			t.Fatal(err)
		}
		if down != 0 || withOS != 16 {
			t.Fatalf("%d upstream devices unavailable (want 0), %d with os (want 16)", down, withOS)
		}

		// The same call again is acknowledged and changes nothing.
		runID := armis.Status.LastRunID
		if err := stream(ctx, c, chunks(call...)); err != nil {
			t.Fatalf("the same upstream call again: %v", err)
		}
		var segs, devs int
		if err := w.store.Pool().QueryRow(ctx, "SELECT segments, devices FROM tenant_acme.sync_runs WHERE run_id = $1", runID).Scan(&segs, &devs); err != nil {
			t.Fatal(err)
		}
		if devs != 8 {
			t.Fatalf("the run counts %d devices after its call came twice, want 8", devs)
		}
	})

	t.Run("a smaller complete run retracts; one that sent fewer devices than it announced is partial and retracts nothing", func(t *testing.T) {
		call := upstreamCall(t, worker, [][]results.DeviceUpdate{{
			upstreamDevice("armis", 60000, run("up-armis-2", 3)), upstreamDevice("armis", 60001, run("up-armis-2", 3)), upstreamDevice("armis", 60002, run("up-armis-2", 3)),
		}})
		if err := stream(ctx, c, chunks(call...)); err != nil {
			t.Fatal(err)
		}
		if n := available(string(armis.UID)); n != 3 || get(armis, "acme-armis").Status.DevicesDiscovered != 3 {
			t.Fatalf("acme-armis holds %d available devices after a full run of 3 (status %+v)", n, armis.Status)
		}
		call = upstreamCall(t, worker, [][]results.DeviceUpdate{{upstreamDevice("armis", 60010, run("up-armis-3", 5)), upstreamDevice("armis", 60011, run("up-armis-3", 5))}})
		if err := stream(ctx, c, chunks(call...)); err != nil {
			t.Fatal(err)
		}
		get(armis, "acme-armis")
		if n := available(string(armis.UID)); n != 5 || armis.Status.LastSyncResult != v1alpha1.SyncResultPartial || !strings.Contains(armis.Status.LastError, "announced 5") {
			t.Fatalf("after a run that sent 2 of 5: %d available, status %+v", n, armis.Status)
		}
	})

	t.Run("the old sync service's form, without sync_meta, completes with its call and retracts nothing", func(t *testing.T) {
		before := get(armis, "acme-armis").Status.LastRunID
		call := upstreamCall(t, worker, [][]results.DeviceUpdate{{upstreamDevice("armis", 60020, nil)}, {upstreamDevice("netbox", 61020, nil)}})
		if err := stream(ctx, c, chunks(call...)); err != nil {
			t.Fatal(err)
		}
		get(armis, "acme-armis")
		if armis.Status.LastRunID == before || armis.Status.LastSyncResult != v1alpha1.SyncResultSuccess || available(string(armis.UID)) != 6 {
			t.Fatalf("after an old-form call: %d available, status %+v", available(string(armis.UID)), armis.Status)
		}
	})

	t.Run("a device that cannot be attributed refuses the call, naming it", func(t *testing.T) {
		globex := sourceUID(t, w, "globex", "globex-armis")
		noSource := upstreamDevice("", 60030, nil)
		otherTenant := upstreamDevice("armis", 60031, nil)
		otherTenant.Metadata["integration_source_uid"] = globex
		otherService := upstreamDevice("armis", 60032, &results.DeviceMeta{SyncServiceID: "not-this-worker", SyncRunID: "x"})
		for _, tc := range []struct {
			name string
			dev  results.DeviceUpdate
			code codes.Code
			want string
		}{
			{"it fits both sources", noSource, codes.InvalidArgument, "chunk 1, device 2: 2 sources of this worker fit"},
			{"it names another tenant's source", otherTenant, codes.PermissionDenied, "chunk 1, device 2: integration_source_uid is not a source of this worker"},
			{"its sync_service_id is not this worker's", otherService, codes.InvalidArgument, "chunk 1, device 2: no source of this worker fits"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				call := upstreamCall(t, worker, [][]results.DeviceUpdate{
					{upstreamDevice("armis", 60040, nil), upstreamDevice("armis", 60041, nil)}, {tc.dev}})
				err := stream(ctx, c, chunks(call...))
				if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
					t.Fatalf("got %v, want %s naming %q", err, tc.code, tc.want)
				}
				assertNoLeak(t, w, status.Convert(err).Message())
			})
		}
	})

	t.Run("a call far larger than one caller may hold lands window by window", func(t *testing.T) {
		// One caller may hold 8 MiB; the call carries about 15 MiB in 1 MiB
		// chunks (250 of them, more than a held call may have). Held whole,
		// it is refused; streamed, it holds one window at a time.
		small := server.NewMetrics()
		_, addr := w.serve("gw-upstream-small", small, func(o *server.Options) {
			o.Admission = server.Admission{IngestBytes: 64 << 20, IngestBytesPerCaller: 8 << 20, MaxMessageBytes: 2 << 20}
		})
		sc := w.clientOf(t, addr, cert)
		const chunksN, perChunk = 250, 40 // armis ids from bigRun: no other check's
		pad := strings.Repeat("p", 1500)
		err := stream(ctx, sc, func(yield func(*pb.GatewayStatusChunk) bool) {
			for i := range chunksN {
				devs := make([]results.DeviceUpdate, perChunk)
				for j := range devs {
					devs[j] = upstreamDevice("armis", bigRun+i*perChunk+j, run("up-armis-big", chunksN*perChunk))
					devs[j].SyncMeta.ChunkIndex, devs[j].SyncMeta.TotalChunks = i, chunksN
					devs[j].SyncMeta.IsFinal = i == chunksN-1 && j == perChunk-1
					devs[j].Metadata["note"] = pad
				}
				raw, err := json.Marshal(devs)
				if err != nil {
					t.Error(err)
					return
				}
				if !yield(chunk(worker, i, chunksN, i == chunksN-1, raw)) {
					return
				}
			}
		})
		if err != nil {
			t.Fatalf("a 250-chunk upstream run: %v", err)
		}
		if n := available(string(armis.UID)); n != chunksN*perChunk || get(armis, "acme-armis").Status.DevicesDiscovered != chunksN*perChunk {
			t.Fatalf("%d devices available after a run of %d, status %+v", n, chunksN*perChunk, armis.Status)
		}
		if got := throttledTotal(small); got != 0 {
			t.Fatalf("%v calls throttled", got)
		}
		test.Eventually(t, "every charge to be given back", 30*time.Second, func() bool { return testutil.ToFloat64(small.IngestHeldBytes) == 0 })
	})
}

// sweepCall is an agent's StreamStatus call of one chunk of sweep results,
// in the summary shape (an object with hosts).
func sweepCall(t *testing.T, agent string, hosts ...results.SweepHost) *pb.GatewayStatusChunk {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"network": "10.188.0.0/16", "total_hosts": len(hosts), "hosts": hosts})
	if err != nil {
		t.Fatal(err)
	}
	return &pb.GatewayStatusChunk{AgentId: agent, TotalChunks: 1, IsFinal: true, Services: []*pb.GatewayServiceStatus{
		{ServiceName: "network_sweep", ServiceType: results.SweepServiceType, Source: "results", Message: raw}}}
}

// checkAgents runs inside TestConfigPlane, after checkUpstream (issue 18,
// item 4): agents may PushStatus (recorded: last seen, version, hostname,
// os, arch) and stream sweep results, which set the availability and last
// seen of their tenant's devices of their partition by IP and of no other
// tenant's or partition's; anything else they stream is acknowledged and
// dropped.
func checkAgents(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := server.NewMetrics()
	_, addr := w.serve("gw-agents", m)
	acmeAgent := w.clientOf(t, addr, svid(t, w, "agent/acme/default/agent-1"))

	t.Run("agents push their status and it is recorded", func(t *testing.T) {
		resp, err := acmeAgent.PushStatus(ctx, &pb.GatewayStatusRequest{AgentId: "agent-1", Partition: "default", Version: "1.2.3", Hostname: "probe-1", Os: "linux", Arch: "arm64", ConfigSource: "remote",
			Services: []*pb.GatewayServiceStatus{{ServiceName: "icmp", ServiceType: "icmp", Available: true, Message: []byte(`{"ok":true}`)}}})
		if err != nil || !resp.GetReceived() {
			t.Fatalf("an agent's PushStatus: %v %v", resp, err)
		}
		// An edge certificate of acme's CA in our own format names an OnPrem
		// SyncService; one that names none is a deleted SyncService's (the
		// manager issues no other), refused, not promoted to an agent.
		revoked := w.clientOf(t, addr, edge(t, w, "acme", "site-agent", "hq", "acme"))
		if _, err := revoked.PushStatus(ctx, &pb.GatewayStatusRequest{AgentId: "site-agent", Version: "1.0.0", Hostname: "edge-1", Os: "linux", Arch: "amd64"}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("PushStatus of an edge certificate naming no SyncService: %v, want PermissionDenied", err)
		}
		stream, err := revoked.StreamStatus(ctx)
		if err == nil {
			_ = stream.Send(sweepCall(t, "site-agent", results.SweepHost{Host: "10.188.0.1", Available: false}))
			_, err = stream.CloseAndRecv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("sweep results of an edge certificate naming no SyncService: %v, want PermissionDenied", err)
		}
		agents, err := w.store.Agents(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, a := range agents {
			got[a.Partition+"/"+a.AgentID] = fmt.Sprintf("%s %s %s %s %s %t", a.Version, a.Hostname, a.OS, a.Arch, a.ConfigSource, a.LastSeen.IsZero())
		}
		if got["default/agent-1"] != "1.2.3 probe-1 linux arm64 remote false" || len(got) != 1 {
			t.Fatalf("agents recorded: %v", got)
		}
		if n := testutil.ToFloat64(m.AgentStatus); n != 1 {
			t.Fatalf("%v agent statuses counted, want 1", n)
		}
	})

	device := func(ip string) (available bool, lastSeen time.Time) {
		t.Helper()
		if err := w.store.Pool().QueryRow(ctx, "SELECT is_available, last_seen FROM tenant_acme.ocsf_devices WHERE ip = $1 AND partition = 'default'", ip).
			Scan(&available, &lastSeen); err != nil {
			t.Fatalf("device %s: %v", ip, err)
		}
		return available, lastSeen
	}
	count := func() int {
		t.Helper()
		var n int
		if err := w.store.Pool().QueryRow(ctx, "SELECT count(*) FROM tenant_acme.ocsf_devices").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Devices of acme's default partition, from checkUpstream's runs.
	down, up := upstreamDevice("armis", bigRun, nil).IP, upstreamDevice("armis", bigRun+1, nil).IP
	if a, _ := device(down); !a {
		t.Fatalf("%s is not available before the sweep", down)
	}
	_, seenBefore := device(up)

	t.Run("an agent's sweep results set availability and last seen by IP; unknown IPs are ignored", func(t *testing.T) {
		devices := count()
		err := stream(ctx, acmeAgent, chunks(sweepCall(t, "agent-1",
			results.SweepHost{Host: down, Available: false},
			results.SweepHost{IP: up, PortResults: []results.SweepPort{{Port: 22, Available: true}}},
			results.SweepHost{Host: "10.250.0.1", Available: true},
			results.SweepHost{Host: "not-an-ip", Available: true})))
		if err != nil {
			t.Fatalf("an agent's sweep results: %v", err)
		}
		if a, _ := device(down); a {
			t.Fatalf("%s is still available after a sweep found it down", down)
		}
		if a, seen := device(up); !a || !seen.After(seenBefore) {
			t.Fatalf("%s after a sweep found it up: available %t, last seen %s (was %s)", up, a, seen, seenBefore)
		}
		if n := count(); n != devices {
			t.Fatalf("a sweep made %d devices of %d", n, devices)
		}
		for outcome, want := range map[string]float64{server.SweepMatched: 2, server.SweepUnknown: 1, server.SweepInvalid: 1} {
			if got := testutil.ToFloat64(m.SweptHosts.WithLabelValues(outcome)); got != want {
				t.Fatalf("%s hosts: %v, want %v", outcome, got, want)
			}
		}
	})

	t.Run("sweep results of another tenant's or partition's agent change nothing", func(t *testing.T) {
		for name, cert := range map[string]string{"globex's agent": "agent/globex/default/agent-1", "acme's agent of another partition": "agent/acme/hq/agent-2"} {
			_, id, _ := strings.Cut(strings.TrimPrefix(cert, "agent/"), "/")
			_, id, _ = strings.Cut(id, "/")
			err := stream(ctx, w.clientOf(t, addr, svid(t, w, cert)), chunks(sweepCall(t, id,
				results.SweepHost{Host: down, Available: true}, results.SweepHost{Host: up, Available: false})))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if a, _ := device(down); a {
				t.Fatalf("%s's sweep made acme's %s available", name, down)
			}
			if a, _ := device(up); !a {
				t.Fatalf("%s's sweep made acme's %s unavailable", name, up)
			}
		}
	})

	t.Run("other results an agent streams are acknowledged and dropped", func(t *testing.T) {
		devices, dropped := count(), testutil.ToFloat64(m.AgentServicesDropped)
		uid := sourceUID(t, w, "acme", "acme-armis")
		ch := chunk("agent-1", 0, 1, true, message(t, uid, &results.Meta{IntegrationSourceUID: uid, SyncRunID: "7d1f2a8e-3333-4c1e-9b7e-000000000001"}, 70000, 3, nil))
		ch.Services = append(ch.Services, &pb.GatewayServiceStatus{ServiceName: "snmp", ServiceType: "snmp", Source: "status", Message: []byte("{}")})
		if err := stream(ctx, acmeAgent, chunks(ch)); err != nil {
			t.Fatalf("an agent's sync results: %v, want them acknowledged", err)
		}
		if n := count(); n != devices {
			t.Fatalf("an agent's sync results made %d devices of %d", n, devices)
		}
		if got := testutil.ToFloat64(m.AgentServicesDropped) - dropped; got != 2 {
			t.Fatalf("%v services dropped, want 2", got)
		}
	})
}
