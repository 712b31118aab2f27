// The interoperability suite: test/upstream's client, written from
// ../shared/UPSTREAM.md, against the gateway binary over mTLS with
// PostgreSQL. Each upstream behaviour that UPSTREAM.md lists, and the test
// that covers it (subtests of TestUpstreamClientsAgainstTheGatewayBinary,
// "the suite" below, unless another package is named):
//
// The proto, side by side with ours
//   - Identical messages (AgentHelloRequest, AgentConfigRequest,
//     ControlStreamHello, ConfigAck, GatewayStatusResponse): every call of
//     the suite; field types in proto TestWireContractSharedWithUpstream.
//   - AgentHelloResponse 8, 9; GatewayStatusRequest 8, 9; GatewayStatusChunk
//     11, 12; GatewayServiceStatus 11, 12 (reserved upstream, our tenant
//     fields): proto TestWireContractSharedWithUpstream; the client never
//     sets them and every call of the suite is served without them.
//   - GatewayStatusRequest 10-14 (config_source, version, hostname, os,
//     arch): suite "agent: PushStatus with the runtime fields is recorded";
//     GatewayStatusChunk 13-17: sent on every chunk of the suite's
//     StreamStatus calls; both typed in proto TestWireContractSharedWithUpstream.
//   - AgentConfigResponse 6, 8, 9, 11 (upstream's checks, sysmon, SNMP,
//     plugins) reserved here, 10 (our SweepConfig; DuskConfig in some
//     upstream builds): proto TestWireContractSharedWithUpstream.
//   - ControlStreamResponse 1 CommandRequest, ControlStreamRequest 2-4
//     CommandAck/Progress/Result: proto TestWireContractSharedWithUpstream;
//     commands sent and answered: gateway/server TestConfigPlane "commands
//     reach a connected worker on its control stream and come back
//     answered"; the client answers commands as upstream does
//     (Agent.RunControlStream).
//
// Identity
//   - Edge CN <component>.<partition>.serviceradar: suite, the sync worker
//     "edge.default.serviceradar"; SPIFFE /<type>/<partition>/<component>:
//     suite, the agent ".../agent/default/agent-1"; mapped to one tenant
//     only, and never another: identity TestUpstreamFormatsMapToOneTenantOnlyWhenConfigured,
//     identity/mtls TestUpstreamIdentitiesMapToTheConfiguredTenantOnly,
//     gateway/app TestUpstreamIdentitiesReachOnlyTheirMappedTenant.
//
// Connection behaviour
//   - A ping every 30 s (10 s timeout), also with no call open: the client
//     dials so (upstream.DialOptions); that an idle connection survives:
//     gateway/app TestIdleClientsPingingAtThePolicyIntervalStayConnected
//     (scaled) and TestIdleAgentSoak (30 s pings, SYNC_KEEPALIVE_SOAK=10m).
//   - A dropped connection and a new one after any failed call: suite
//     "agent: a failed call drops the connection and the next call dials again".
//   - The ControlStream retried every 5 s, looping on a lasting refusal:
//     suite "agent: its control stream is served and stays open".
//
// Config it reads
//   - config_json.sweep groups (targets as networks and /32 hosts, ports,
//     modes, schedule, settings, device_targets, config_hash): suite "agent:
//     config_json.sweep has the sweep-enabled source's devices"; hash
//     changes exactly with content: gateway/sweep TestGroupsHashChangesExactlyWithContent;
//     groups [] clears: gateway/sweep TestNoSweepSourcesClearTheAgentsTargets.
//   - The sync runtime's config_json {"agent_id", "sources": {key:
//     SourceConfig}}: suite "sync: config_json names the worker's sources"
//     (agent_id, type, endpoint, credentials, partition, sync_service_id,
//     per-source agent_id, insecure_skip_verify, which the results then
//     carry; poll_interval/discovery_interval as duration strings, so the
//     runtime does not skip them as "no intervals configured"). NOT covered:
//     prefix and gateway_id (not ours to give), and Armis credentials travel
//     as secret_key (the old sync service's key), not the agent's
//     api_key/api_secret pair.
//
// Device results it sends (StreamStatus)
//   - Service "sync"/"sync", a plain JSON array per chunk, chunks of up to
//     about 3 MiB, a whole run in ONE call of many chunks, chunk_index,
//     total_chunks and is_final on each GatewayStatusChunk: suite "sync: a
//     whole run of 200,000 devices in one call lands and completes".
//   - Device fields (device_id, ip, source, agent_id, gateway_id, partition,
//     service_type, service_id, RFC 3339 timestamp, hostname, mac, metadata
//     with operating_system, confidence), no integration_source_uid: the same
//     subtest (os from operating_system, attribution by source and
//     sync_service_id); a device that fits no source or several is refused
//     naming it: gateway/server TestConfigPlane "StreamStatus takes
//     upstream's array form..." and gateway/ingest TestUpstreamAttributesEachDeviceOrNamesIt.
//   - Per-device sync_meta (sync_service_id, sync_run_id, chunk_index,
//     total_chunks, total_devices, is_final) drives the run: suite "sync: a
//     whole run ..." (completes, IntegrationSource status), "sync: the same
//     call again doubles nothing", "sync: a second run missing devices
//     retracts them"; a run short of its total_devices retracts nothing:
//     gateway/server TestConfigPlane (checkUpstream).
//   - The old sync service's form (always "is_available": false, no
//     sync_meta, several sources merged in one call): suite "sync: the old
//     sync service's form merging two sources marks nothing unavailable".
//   - current_sequence = run id on upstream's ResultsChunk: not this
//     service's message (agents' results to pollers); not covered.
//   - Agents push ordinary status: suite "agent: PushStatus with the runtime
//     fields is recorded"; agents stream sweep results (service type
//     "sweep"): suite "agent: sweep results of its config_json targets set
//     the devices' availability" (integration -> devices -> sweep targets in
//     config_json -> sweep results -> availability); anything else an agent
//     streams is acknowledged: suite "agent: other services it streams are
//     acknowledged, never refused".

package upstream_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/test/upstream"
)

// gatewayBinary is the gateway built for this test process.
var gatewayBinary string

func TestMain(m *testing.M) { os.Exit(gatewayproc.Main(m, &gatewayBinary)) }

// issue signs a client certificate in ServiceRadar's own format (a CN and
// an optional SPIFFE ID, no tenant) under an upstream CA.
func issue(t *testing.T, issuer *ca.Authority, cn, spiffe string) *ca.Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if spiffe != "" {
		u, _ := url.Parse(spiffe)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, &key.PublicKey, issuer.Key.Signer())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	raw, _ := x509.MarshalECPrivateKey(key)
	k, err := ca.ParseKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: raw}))
	if err != nil {
		t.Fatal(err)
	}
	return &ca.Issued{Cert: cert, Key: k}
}

// Tenant acme, its SyncService and its sources.
const (
	acmeID = "112005d8-e7e8-5ad5-ae5b-58baa049377d"
	schema = "tenant_acme"
	// bigRun is how many devices the whole run in one call has: many
	// chunks of about 3 MiB, still quick.
	bigRun = 200000
	// keptRun is how many of them the second run reports.
	keptRun = 1000
)

// armisDevice is Armis device i as upstream's sync clients report it.
func armisDevice(i int) upstream.Device {
	ip := fmt.Sprintf("10.%d.%d.%d", 100+i>>16, i>>8&255, i&255)
	return upstream.Device{DeviceID: "default:" + ip, IP: ip, Source: "armis", GatewayID: "upstream-gw", Hostname: fmt.Sprintf("armis-%06d", i),
		MAC: fmt.Sprintf("00:1b:21:%02x:%02x:%02x", i>>16&255, i>>8&255, i&255), Confidence: 50,
		Metadata: map[string]string{"armis_device_id": fmt.Sprint(i), "operating_system": "Windows 11", "manufacturer": "Dell"}}
}

// netboxDevice is NetBox device i as upstream's sync clients report it.
func netboxDevice(i int) upstream.Device {
	ip := fmt.Sprintf("10.70.0.%d", i+1)
	return upstream.Device{DeviceID: "default:" + ip, IP: ip, Source: "netbox", GatewayID: "upstream-gw", Hostname: fmt.Sprintf("netbox-%d", i),
		Confidence: 50, Metadata: map[string]string{"netbox_device_id": fmt.Sprint(100 + i), "operating_system": "Ubuntu 24.04"}}
}

// TestUpstreamClientsAgainstTheGatewayBinary runs upstream-style clients
// (test/upstream) with upstream-format certificates against the gateway
// binary over mTLS with PostgreSQL, mapped to tenant acme: a sync worker
// (edge CN of acme's OnPrem SyncService "edge", sources Armis "inventory"
// and NetBox "lab", the latter swept) sends whole runs in one call and the
// old sync service's merged form; an agent (SPIFFE, type agent) reads its
// sweep from config_json, reconnects after a failed call, holds its
// ControlStream, pushes its status and streams sweep results that change
// the devices' availability. The subtests run in order, each on what the
// one before left.
func TestUpstreamClientsAgainstTheGatewayBinary(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}
	if err := env.Client.Create(ctx, tn); err != nil {
		t.Fatal(err)
	}
	tn.Status.TenantID = acmeID
	if err := env.Client.Status().Update(ctx, tn); err != nil {
		t.Fatal(err)
	}
	ns, err := env.TenantNamespace(ctx, "acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: ns},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "default"}}
	ref := v1alpha1.SyncServiceReference{Name: "edge"}
	inventory := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "inventory", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationArmis, Endpoint: "https://armis.acme.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "armis"},
		Partition: "default", SyncServiceRef: ref, Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}},
		MaxRetractPercent: new(int32(100))}} // its second run retracts 99.5% on purpose: no brake
	lab := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationNetBox, Endpoint: "https://netbox.acme.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"},
		Partition: "default", SyncServiceRef: ref,
		Sweep: &v1alpha1.SweepSpec{Enabled: true, Modes: []v1alpha1.SweepMode{"icmp", "tcp"}, Ports: []int32{22},
			Interval: &metav1.Duration{Duration: 10 * time.Minute}}}}
	for _, o := range []client.Object{
		ss,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "armis", Namespace: ns}, Data: map[string][]byte{v1alpha1.ArmisSecretKey: []byte("armis-secret")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "netbox", Namespace: ns}, Data: map[string][]byte{v1alpha1.NetBoxTokenKey: []byte("netbox-token")}},
		inventory, lab,
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	dsn := pgtest.NewDatabase(t)
	root, _ := ca.NewRoot("root", 0, nil)
	upstreamCA, _ := ca.NewRoot("serviceradar-upstream-root", 0, nil)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(caFile, (&ca.Issued{Cert: upstreamCA.Cert}).CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{Binary: gatewayBinary, Dir: dir, Env: env, Root: root, PostgresDSN: dsn,
		Args: []string{"--upstream-tenant=acme", "--upstream-ca-file=" + caFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// count runs a query of one integer in acme's schema.
	count := func(t *testing.T, query string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(ctx, strings.ReplaceAll(query, "$schema", schema), args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	// status reads a source's status once the gateway has recorded a run
	// other than the one before.
	sourceStatus := func(t *testing.T, src *v1alpha1.IntegrationSource, before string) v1alpha1.IntegrationSourceStatus {
		t.Helper()
		test.Eventually(t, src.Name+"'s status to show its run", 30*time.Second, func() bool {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), src); err != nil {
				t.Fatal(err)
			}
			return src.Status.LastRunID != "" && src.Status.LastRunID != before
		})
		return src.Status
	}

	classifier, _ := identity.NewClassifier("", "")
	tlsOf := func(name string, cert *ca.Issued) *tls.Config {
		source := pkitest.Source(t, filepath.Join(dir, name), cert, root.Cert)
		return mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: source}, mtls.ServerExpectation{})
	}
	worker := upstream.New(upstream.Config{Target: gw.Addr, AgentID: "edge", Partition: "default", Version: "1.2.3", Hostname: "sync-host",
		OS: "linux", Arch: "amd64", Log: logr.Discard(), TLS: tlsOf("edge", issue(t, upstreamCA, "edge.default.serviceradar", ""))})
	defer worker.Close()
	agent := upstream.New(upstream.Config{Target: gw.Addr, AgentID: "agent-1", Partition: "default", Version: "1.2.3", Hostname: "edge-host",
		OS: "linux", Arch: "amd64", ControlStreamRetry: 200 * time.Millisecond, Log: logr.Discard(),
		TLS: tlsOf("agent", issue(t, upstreamCA, "", "spiffe://serviceradar.local/agent/default/agent-1"))})
	defer agent.Close()

	var (
		syncServiceID string
		agentCfg      *pb.AgentConfigResponse
		sweep         *upstream.Sweep
	)
	// The agent's control stream runs from its step to the end, as an
	// agent's does.
	controlCtx, stopControl := context.WithCancel(ctx)
	var looped chan struct{}
	defer func() {
		stopControl()
		if looped != nil {
			<-looped
		}
	}()
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"sync: config_json names the worker's sources", func(t *testing.T) {
			var cfg *upstream.SyncConfig
			test.Eventually(t, "the worker's config to carry both sources", time.Minute, func() bool {
				resp, err := worker.GetConfig(ctx, "", "")
				if err != nil {
					t.Fatal(err)
				}
				var skipped []string
				if cfg, skipped, err = upstream.ParseSyncConfig(resp.GetConfigJson()); err != nil {
					t.Fatal(err)
				}
				if len(skipped) > 0 {
					t.Fatalf("upstream's sync runtime would skip %v: no intervals configured", skipped)
				}
				return len(cfg.Sources) == 2
			})
			got := map[string]string{}
			for _, src := range cfg.Sources {
				got[src.Type] = fmt.Sprint(src.Endpoint, " ", src.Partition, " ", src.SyncServiceID, " ", len(src.Credentials), " ", src.AgentID, " ", src.InsecureSkipVerify)
			}
			want := map[string]string{"armis": "https://armis.acme.example default " + string(ss.UID) + " 1 edge false", "netbox": "https://netbox.acme.example default " + string(ss.UID) + " 1 edge false"}
			if cfg.AgentID != "edge" || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("config_json: agent %q, sources %v, want %v", cfg.AgentID, got, want)
			}
			syncServiceID = string(ss.UID)
		}},

		{"sync: a whole run of 200,000 devices in one call lands and completes", func(t *testing.T) {
			chunks, err := worker.StreamSync(ctx, upstream.Run{Devices: bigRun, Device: armisDevice, SyncServiceID: syncServiceID, RunID: "armis-run-1"})
			if err != nil {
				t.Fatalf("the run in one call of %d chunks: %v", chunks, err)
			}
			if chunks < 20 {
				t.Fatalf("the run went in %d chunks; it is meant to take many", chunks)
			}
			if peak, _, err := gw.Memory(); err == nil {
				t.Logf("%d devices in one call of %d chunks; gateway peak RSS %d MiB", bigRun, chunks, peak)
			}
			st := sourceStatus(t, inventory, "")
			if st.LastSyncResult != v1alpha1.SyncResultSuccess || st.DevicesDiscovered != bigRun {
				t.Fatalf("inventory's status after its run: %+v", st)
			}
			if n := count(t, `SELECT count(*) FROM $schema.sync_runs WHERE run_id = $1 AND run_complete AND full_fetch AND devices = $2`, st.LastRunID, bigRun); n != 1 {
				t.Fatalf("the run %s is not recorded complete with %d devices", st.LastRunID, bigRun)
			}
			if n := count(t, `SELECT count(*) FROM $schema.ocsf_devices
				WHERE hostname LIKE 'armis-%' AND is_available AND os = 'Windows 11' AND vendor = 'Dell' AND mac IS NOT NULL`); n != bigRun {
				t.Fatalf("%d available Armis devices with their os, vendor and mac, want %d", n, bigRun)
			}
		}},

		{"sync: the same call again doubles nothing", func(t *testing.T) {
			before := inventory.Status
			if _, err := worker.StreamSync(ctx, upstream.Run{Devices: bigRun, Device: armisDevice, SyncServiceID: syncServiceID, RunID: "armis-run-1"}); err != nil {
				t.Fatalf("the same call again: %v", err)
			}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inventory), inventory); err != nil {
				t.Fatal(err)
			}
			if inventory.Status.LastRunID != before.LastRunID || inventory.Status.DevicesDiscovered != bigRun {
				t.Fatalf("status after the same call again: %+v, was %+v", inventory.Status, before)
			}
			runs := count(t, `SELECT count(*) FROM $schema.sync_runs WHERE integration_source_uid = $1`, string(inventory.UID))
			devices := count(t, `SELECT devices FROM $schema.sync_runs WHERE run_id = $1`, before.LastRunID)
			all := count(t, `SELECT count(*) FROM $schema.ocsf_devices`)
			if runs != 1 || devices != bigRun || all != bigRun {
				t.Fatalf("after the same call again: %d runs (want 1), the run counts %d devices and the tenant has %d (want %d)", runs, devices, all, bigRun)
			}
		}},

		{"sync: a second run missing devices retracts them", func(t *testing.T) {
			before := inventory.Status.LastRunID
			if _, err := worker.StreamSync(ctx, upstream.Run{Devices: keptRun, Device: armisDevice, SyncServiceID: syncServiceID, RunID: "armis-run-2"}); err != nil {
				t.Fatal(err)
			}
			st := sourceStatus(t, inventory, before)
			if st.LastSyncResult != v1alpha1.SyncResultSuccess || st.DevicesDiscovered != keptRun {
				t.Fatalf("inventory's status after its second run: %+v", st)
			}
			if n := count(t, `SELECT retracted FROM $schema.sync_runs WHERE run_id = $1`, st.LastRunID); n != bigRun-keptRun {
				t.Fatalf("the second run retracted %d devices, want %d", n, bigRun-keptRun)
			}
			claimed := count(t, `SELECT count(*) FROM $schema.source_devices WHERE integration_source_uid = $1 AND available`, string(inventory.UID))
			up := count(t, `SELECT count(*) FROM $schema.ocsf_devices WHERE hostname LIKE 'armis-%' AND is_available`)
			if claimed != keptRun || up != keptRun {
				t.Fatalf("after the second run: %d claimed, %d available, want %d", claimed, up, keptRun)
			}
		}},

		{"sync: the old sync service's form merging two sources marks nothing unavailable", func(t *testing.T) {
			armisBefore, labBefore := inventory.Status.LastRunID, lab.Status.LastRunID
			// Four NetBox devices, Armis device 0 (reported and available)
			// and two new Armis devices, in one call.
			legacy := []upstream.Device{netboxDevice(0), netboxDevice(1), netboxDevice(2), netboxDevice(3), armisDevice(0), armisDevice(bigRun), armisDevice(bigRun + 1)}
			if _, err := worker.StreamSync(ctx, upstream.Run{Devices: len(legacy), Device: func(i int) upstream.Device { return legacy[i] }, Legacy: true}); err != nil {
				t.Fatal(err)
			}
			for _, s := range []struct {
				src    *v1alpha1.IntegrationSource
				before string
			}{{inventory, armisBefore}, {lab, labBefore}} {
				if st := sourceStatus(t, s.src, s.before); st.LastSyncResult != v1alpha1.SyncResultSuccess {
					t.Fatalf("%s's status after the old form: %+v", s.src.Name, st)
				}
			}
			var ips []string
			for _, d := range legacy {
				ips = append(ips, d.IP)
			}
			if n := count(t, `SELECT count(*) FROM $schema.ocsf_devices WHERE ip = ANY($1) AND is_available AND os IS NOT NULL`, ips); n != len(legacy) {
				t.Fatalf("%d of the old form's %d devices available with their os", n, len(legacy))
			}
			// Nothing retracted: the second run's devices and the two new ones.
			if n := count(t, `SELECT count(*) FROM $schema.source_devices WHERE integration_source_uid = $1 AND available`, string(inventory.UID)); n != keptRun+2 {
				t.Fatalf("inventory claims %d devices after the old form, want %d", n, keptRun+2)
			}
			if n := count(t, `SELECT count(*) FROM $schema.sync_runs WHERE run_id = ANY($1) AND run_complete AND NOT full_fetch AND retracted = 0`,
				[]string{inventory.Status.LastRunID, lab.Status.LastRunID}); n != 2 {
				t.Fatalf("%d of the old form's 2 runs complete without retracting", n)
			}
		}},

		{"agent: config_json.sweep has the sweep-enabled source's devices", func(t *testing.T) {
			hello, err := agent.Hello(ctx, "")
			if err != nil || !hello.GetAccepted() || !hello.GetConfigOutdated() {
				t.Fatalf("Hello: %+v %v", hello, err)
			}
			test.Eventually(t, "the agent's sweep to have lab's devices", time.Minute, func() bool {
				if agentCfg, err = agent.GetConfig(ctx, "", ""); err != nil {
					t.Fatal(err)
				}
				if sweep, err = upstream.ParseSweep(agentCfg.GetConfigJson()); err != nil {
					t.Fatal(err)
				}
				return sweep != nil && len(sweep.Groups) == 1 && len(sweep.Groups[0].DeviceTargets) == 4
			})
			g := sweep.Groups[0]
			if got := fmt.Sprint(g.SweepGroupID, g.Networks, g.Ports, g.Modes, g.ScheduleType, g.Interval); got !=
				fmt.Sprint(string(lab.UID), []string{"10.70.0.1/32", "10.70.0.2/32", "10.70.0.3/32", "10.70.0.4/32"}, []int{22}, []string{"icmp", "tcp"}, "interval", 10*time.Minute) {
				t.Fatalf("sweep group %s", got)
			}
			if sweep.ConfigHash == "" {
				t.Fatal("no config_hash")
			}
		}},

		{"agent: a failed call drops the connection and the next call dials again", func(t *testing.T) {
			dials := agent.Dials()
			if _, err := agent.GetConfig(ctx, "someone-else", ""); grpcstatus.Code(err) != codes.PermissionDenied {
				t.Fatalf("GetConfig as another component: %v", err)
			}
			again, err := agent.GetConfig(ctx, "", agentCfg.GetConfigVersion())
			if err != nil || !again.GetNotModified() || agent.Dials() != dials+1 {
				t.Fatalf("after a failed call: %+v %v, dials %d -> %d", again, err, dials, agent.Dials())
			}
		}},

		{"agent: its control stream is served and stays open", func(t *testing.T) {
			pushed := make(chan *pb.AgentConfigResponse, 16)
			looped = make(chan struct{})
			go func() {
				defer close(looped)
				agent.RunControlStream(controlCtx, func(c *pb.AgentConfigResponse) { pushed <- c })
			}()
			select {
			case c := <-pushed:
				if c.GetConfigVersion() != agentCfg.GetConfigVersion() {
					t.Fatalf("pushed version %s, GetConfig gave %s", c.GetConfigVersion(), agentCfg.GetConfigVersion())
				}
			case <-ctx.Done():
				t.Fatal("no config on the control stream")
			}
			// One more unary call on the same connection proves the stream's
			// connection is still there; the stream itself never failed.
			if _, err := agent.Hello(ctx, agentCfg.GetConfigVersion()); err != nil {
				t.Fatal(err)
			}
			if attempts, open := agent.ControlStats(); attempts != 1 || !open {
				t.Fatalf("control stream attempts %d, open %v: the agent is looping", attempts, open)
			}
		}},

		{"agent: PushStatus with the runtime fields is recorded", func(t *testing.T) {
			resp, err := agent.PushStatus(ctx, "remote", &pb.GatewayServiceStatus{ServiceName: "icmp", ServiceType: "icmp", Available: true,
				AgentId: "agent-1", Partition: "default", Message: []byte(`{"host":"10.70.0.1","available":true}`)})
			if err != nil || !resp.GetReceived() {
				t.Fatalf("PushStatus: %v %v", resp, err)
			}
			var row string
			var seen time.Time
			if err := db.QueryRow(ctx, `SELECT concat_ws(' ', version, hostname, os, arch, config_source), last_seen FROM `+schema+`.agents
				WHERE partition = 'default' AND agent_id = 'agent-1'`).Scan(&row, &seen); err != nil {
				t.Fatalf("the agent's row: %v", err)
			}
			if row != "1.2.3 edge-host linux amd64 remote" || time.Since(seen) > time.Hour {
				t.Fatalf("agents row %q, last seen %s", row, seen)
			}
		}},

		{"agent: sweep results of its config_json targets set the devices' availability", func(t *testing.T) {
			hosts := sweep.Hosts()
			if len(hosts) != 4 {
				t.Fatalf("sweep targets %v", hosts)
			}
			device := func(ip string) (available bool, lastSeen time.Time) {
				t.Helper()
				if err := db.QueryRow(ctx, `SELECT is_available, last_seen FROM `+schema+`.ocsf_devices WHERE partition = 'default' AND ip = $1`, ip).
					Scan(&available, &lastSeen); err != nil {
					t.Fatalf("device %s: %v", ip, err)
				}
				return available, lastSeen
			}
			_, seenBefore := device(hosts[2])
			// The first two do not answer; the others answer ICMP or on port 22.
			results := []upstream.SweepHost{{Host: hosts[0]}, {Host: hosts[1], PortResults: []upstream.PortResult{{Port: 22}}},
				{Host: hosts[2], PortResults: []upstream.PortResult{{Port: 22, Available: true}}}, {Host: hosts[3], Available: true}}
			if err := agent.StreamSweep(ctx, "10.70.0.0/24", results); err != nil {
				t.Fatalf("sweep results: %v", err)
			}
			var got []bool
			for _, ip := range hosts {
				a, _ := device(ip)
				got = append(got, a)
			}
			if fmt.Sprint(got) != "[false false true true]" {
				t.Fatalf("availability after the sweep %v, want [false false true true]", got)
			}
			if _, seen := device(hosts[2]); !seen.After(seenBefore) {
				t.Fatalf("%s answered but its last seen stayed %s", hosts[2], seen)
			}
			// A device found down is still a target, and found up again it is available.
			next, err := agent.GetConfig(ctx, "", "")
			if err != nil {
				t.Fatal(err)
			}
			if again, err := upstream.ParseSweep(next.GetConfigJson()); err != nil || len(again.Hosts()) != 4 {
				t.Fatalf("sweep targets after the sweep: %v %v", again, err)
			}
			if err := agent.StreamSweep(ctx, "10.70.0.0/24", []upstream.SweepHost{{Host: hosts[0], Available: true}}); err != nil {
				t.Fatal(err)
			}
			if a, _ := device(hosts[0]); !a {
				t.Fatalf("%s answered a later sweep and is still unavailable", hosts[0])
			}
		}},

		{"agent: other services it streams are acknowledged, never refused", func(t *testing.T) {
			dials, devices := agent.Dials(), count(t, `SELECT count(*) FROM $schema.ocsf_devices`)
			err := agent.StreamServices(ctx, &pb.GatewayServiceStatus{ServiceName: "snmp", ServiceType: "snmp", Source: upstream.ResultsSource, Available: true,
				AgentId: "agent-1", Partition: "default", Message: []byte(`{"10.70.0.9":{"sysName":"printer"}}`)})
			if err != nil || agent.Dials() != dials {
				t.Fatalf("an agent's snmp results: %v (dials %d -> %d)", err, dials, agent.Dials())
			}
			if n := count(t, `SELECT count(*) FROM $schema.ocsf_devices`); n != devices {
				t.Fatalf("an agent's snmp results made %d devices of %d", n, devices)
			}
			if attempts, open := agent.ControlStats(); attempts != 1 || !open {
				t.Fatalf("control stream attempts %d, open %v after the agent's calls: the agent is looping", attempts, open)
			}
		}},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			t.Fatalf("%q failed; the steps after it build on it", step.name)
		}
	}
}
