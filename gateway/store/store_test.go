package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

const (
	acmeID   = "112005d8-e7e8-5ad5-ae5b-58baa049377d"
	globexID = "5b0c8c3e-2c38-5f0e-9d3c-7f3e0b1e2a11"
	srcUID   = "0b5f5f6e-8f7d-4c59-9d7e-3c3a3c0f0001"
)

func open(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fleet is a synthetic inventory: device i has a faker id, one to three
// global MACs and an IP.
type fleet struct{ ips []string }

func newFleet(n int) *fleet {
	f := &fleet{ips: make([]string, n)}
	for i := range f.ips {
		f.ips[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return f
}

func mac(i, k int) string {
	return fmt.Sprintf("00:1b:%02x:%02x:%02x:%02x", k, i>>16&255, i>>8&255, i&255)
}

func (f *fleet) device(i int) store.Device {
	yes := true
	d := store.Device{DeviceID: fmt.Sprintf("fk-%d", i), IP: f.ips[i], Hostname: fmt.Sprintf("host-%d", i), IsAvailable: &yes,
		Metadata: map[string]string{"integration_type": "faker"}}
	for k := range 1 + i%3 {
		d.MACs = append(d.MACs, mac(i, k))
	}
	return d
}

// swap exchanges the primary IPs of pct percent of the devices (DHCP churn).
func (f *fleet) swap(rng *rand.Rand, pct int) {
	n := len(f.ips) * pct / 100
	for range n / 2 {
		a, b := rng.IntN(len(f.ips)), rng.IntN(len(f.ips))
		f.ips[a], f.ips[b] = f.ips[b], f.ips[a]
	}
}

// run streams the whole fleet as one run of segments of size per.
func (f *fleet) run(t *testing.T, s *store.Store, slug, tenantID string, per int) string {
	t.Helper()
	runID := uuid.NewString()
	n := len(f.ips)
	for seg, start := 0, 0; start < n; seg, start = seg+1, start+per {
		end := min(n, start+per)
		devs := make([]store.Device, 0, end-start)
		for i := start; i < end; i++ {
			devs = append(devs, f.device(i))
		}
		_, err := s.ApplySegment(context.Background(), store.Segment{TenantID: tenantID, TenantSlug: slug, Partition: "default", Integration: "faker",
			SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: runID, Segment: seg, RunComplete: end == n, FullFetch: true, Devices: devs})
		if err != nil {
			t.Fatal(err)
		}
	}
	return runID
}

func count(t *testing.T, s *store.Store, slug, where string, args ...any) int {
	t.Helper()
	var n int
	q := fmt.Sprintf("SELECT count(*) FROM %s.ocsf_devices", store.Schema(slug))
	if where != "" {
		q += " WHERE " + where
	}
	if err := s.Pool().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSchemaNames(t *testing.T) {
	for in, want := range map[string]string{"acme": "tenant_acme", "Acme-Corp.eu": "tenant_acme_corp_eu", "a b;drop": "tenant_a_b_drop"} {
		if got := store.Schema(in); got != want {
			t.Errorf("Schema(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIPChurnKeepsEveryDevice(t *testing.T) {
	s := open(t)
	const n = 50000
	f := newFleet(n)
	f.run(t, s, "acme", acmeID, 5000)
	var identifiers int
	if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM tenant_acme.device_identifiers").Scan(&identifiers); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for cycle := range 10 {
		f.swap(rng, 5)
		f.run(t, s, "acme", acmeID, 5000)
		if got := count(t, s, "acme", ""); got != n {
			t.Fatalf("cycle %d: %d devices, want %d", cycle, got, n)
		}
	}
	var after, merges int
	if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM tenant_acme.device_identifiers").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM tenant_acme.merge_audit").Scan(&merges); err != nil {
		t.Fatal(err)
	}
	if after != identifiers || merges != 0 {
		t.Fatalf("identifiers %d -> %d, merges %d: churn changed identities", identifiers, after, merges)
	}
	// Every device carries its current IP, and its own identifiers.
	for _, i := range []int{0, 1, 4999, 25000, n - 1} {
		var ip, owner string
		err := s.Pool().QueryRow(context.Background(), `SELECT d.ip, i.identifier_value FROM tenant_acme.ocsf_devices d
JOIN tenant_acme.device_identifiers i ON i.device_uid = d.uid AND i.identifier_type = 'faker_device_id'
WHERE i.identifier_value = $1`, fmt.Sprintf("fk-%d", i)).Scan(&ip, &owner)
		if err != nil || ip != f.ips[i] {
			t.Fatalf("device %d: ip %q want %q (%v)", i, ip, f.ips[i], err)
		}
	}
	if got := count(t, s, "acme", "NOT is_available"); got != 0 {
		t.Fatalf("%d devices retracted by churn", got)
	}
}

func TestReplayedSegmentChangesNothing(t *testing.T) {
	s := open(t)
	f := newFleet(10)
	seg := store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "faker", SourceUID: srcUID,
		SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: []store.Device{f.device(0), f.device(1)}}
	first, err := s.ApplySegment(context.Background(), seg)
	if err != nil || first.Duplicate || first.Devices != 2 {
		t.Fatalf("first apply %+v %v", first, err)
	}
	seg.Devices[0].Hostname = "changed-in-replay"
	again, err := s.ApplySegment(context.Background(), seg)
	if err != nil || !again.Duplicate {
		t.Fatalf("replay %+v %v", again, err)
	}
	if got := count(t, s, "acme", "hostname = 'changed-in-replay'"); got != 0 {
		t.Fatal("a replayed segment changed a device")
	}
	var segments, devices int
	if err := s.Pool().QueryRow(context.Background(), "SELECT segments, devices FROM tenant_acme.sync_runs WHERE run_id = $1", seg.RunID).Scan(&segments, &devices); err != nil || segments != 1 || devices != 2 {
		t.Fatalf("run bookkeeping after replay: segments %d devices %d %v", segments, devices, err)
	}
}

func TestPartialUpdateKeepsKnownFields(t *testing.T) {
	s := open(t)
	yes := true
	apply := func(d store.Device) {
		t.Helper()
		if _, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "armis",
			SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: []store.Device{d}}); err != nil {
			t.Fatal(err)
		}
	}
	apply(store.Device{DeviceID: "42", IP: "10.0.0.1", Hostname: "plc-1", Vendor: "Siemens", OS: "fw 2", IsAvailable: &yes, Metadata: map[string]string{"site": "hq"}})
	apply(store.Device{DeviceID: "42", IP: "10.0.0.2", Metadata: map[string]string{"role": "plc"}})
	var ip, host, vendor, os, site, role string
	var avail bool
	err := s.Pool().QueryRow(context.Background(), `SELECT ip, hostname, vendor, os, metadata->>'site', metadata->>'role', is_available FROM tenant_acme.ocsf_devices`).
		Scan(&ip, &host, &vendor, &os, &site, &role, &avail)
	if err != nil {
		t.Fatal(err)
	}
	if ip != "10.0.0.2" || host != "plc-1" || vendor != "Siemens" || os != "fw 2" || site != "hq" || role != "plc" || !avail {
		t.Fatalf("after a partial update: ip=%s host=%s vendor=%s os=%s site=%s role=%s available=%v", ip, host, vendor, os, site, role, avail)
	}
}

func TestIdentityRules(t *testing.T) {
	type step struct {
		integration string
		devices     []store.Device
	}
	la := "02:00:5e:10:00:01" // locally administered
	for _, tc := range []struct {
		name    string
		steps   []step
		devices int
		merges  int
	}{
		{"a locally administered MAC shared by two devices does not merge them", []step{
			{"armis", []store.Device{{DeviceID: "1", MACs: []string{la}}, {DeviceID: "2", MACs: []string{la}}}},
		}, 2, 0},
		{"the same global MAC in two updates is one device", []step{
			{"faker", []store.Device{{MACs: []string{"00-1B-44-11-3A-B7"}, IP: "10.0.0.1"}, {MACs: []string{"001b.4411.3ab7"}, IP: "10.0.0.9"}}},
		}, 1, 0},
		{"one Armis id across sources' MAC evidence merges with an audit row", []step{
			{"armis", []store.Device{{DeviceID: "7"}}},
			{"netbox", []store.Device{{DeviceID: "n1", MACs: []string{"00:1b:44:11:3a:b7"}}}},
			{"armis", []store.Device{{DeviceID: "7", MACs: []string{"00:1b:44:11:3a:b7"}}}},
		}, 1, 1},
		{"a MAC never joins two devices that two ids of one integration tell apart", []step{
			{"armis", []store.Device{{DeviceID: "1", MACs: []string{"00:1b:44:11:3a:b7"}}}},
			{"armis", []store.Device{{DeviceID: "2", MACs: []string{"00:1b:44:11:3a:b7"}}}},
		}, 2, 0},
		{"ids of different integrations with the same number stay apart", []step{
			{"armis", []store.Device{{DeviceID: "100"}}},
			{"netbox", []store.Device{{DeviceID: "100"}}},
		}, 2, 0},
		{"an IP alone finds the device that has it", []step{
			{"faker", []store.Device{{IP: "10.1.1.1", Hostname: "a"}}},
			{"faker", []store.Device{{IP: "10.1.1.1", Hostname: "b"}}},
		}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			for _, st := range tc.steps {
				if _, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: st.integration,
					SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: st.devices}); err != nil {
					t.Fatal(err)
				}
			}
			if got := count(t, s, "acme", ""); got != tc.devices {
				t.Fatalf("%d devices, want %d", got, tc.devices)
			}
			var merges int
			if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM tenant_acme.merge_audit").Scan(&merges); err != nil || merges != tc.merges {
				t.Fatalf("%d merges, want %d (%v)", merges, tc.merges, err)
			}
		})
	}
}

func TestTenantsNeverShareDevices(t *testing.T) {
	s := open(t)
	for slug, id := range map[string]string{"acme": acmeID, "globex": globexID} {
		if _, err := s.ApplySegment(context.Background(), store.Segment{TenantID: id, TenantSlug: slug, Partition: "default", Integration: "armis",
			SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(),
			Devices: []store.Device{{DeviceID: "1", MACs: []string{"00:1b:44:11:3a:b7"}, Hostname: slug + "-host"}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, slug := range []string{"acme", "globex"} {
		if got := count(t, s, slug, ""); got != 1 {
			t.Fatalf("%s has %d devices", slug, got)
		}
		if got := count(t, s, slug, "hostname = $1", slug+"-host"); got != 1 {
			t.Fatalf("%s's device is not its own", slug)
		}
	}
	var acmeUID, globexUID string
	_ = s.Pool().QueryRow(context.Background(), "SELECT uid FROM tenant_acme.ocsf_devices").Scan(&acmeUID)
	_ = s.Pool().QueryRow(context.Background(), "SELECT uid FROM tenant_globex.ocsf_devices").Scan(&globexUID)
	if acmeUID == globexUID {
		t.Fatalf("the same identifier gave the same uid in two tenants: %s", acmeUID)
	}
}

func TestRetraction(t *testing.T) {
	s := open(t)
	f := newFleet(100)
	f.run(t, s, "acme", acmeID, 40)
	short := &fleet{ips: f.ips[:90]}

	// A run that failed part-way (no full fetch) retracts nothing.
	runID := uuid.NewString()
	devs := make([]store.Device, 0, 90)
	for i := range 90 {
		devs = append(devs, short.device(i))
	}
	run, err := s.ApplySegment(context.Background(), store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "faker",
		SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: runID, RunComplete: true, FullFetch: false, Error: "page 3: 500", Devices: devs})
	if err != nil || run.Run == nil || run.Run.Retracted != 0 {
		t.Fatalf("partial run: %+v %v", run, err)
	}
	if got := count(t, s, "acme", "is_available"); got != 100 {
		t.Fatalf("a partial run retracted devices: %d available", got)
	}
	// A complete run without the last ten retracts exactly them.
	short.run(t, s, "acme", acmeID, 40)
	if got := count(t, s, "acme", "is_available"); got != 90 {
		t.Fatalf("%d available after a full run without 10 devices", got)
	}
	// Deleting the source with Retract marks the rest unavailable, twice safely.
	for range 2 {
		if _, err := s.RetractSource(context.Background(), "acme", "default", srcUID); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(t, s, "acme", "is_available"); got != 0 {
		t.Fatalf("%d available after the source was retracted", got)
	}
	if got := count(t, s, "acme", ""); got != 100 {
		t.Fatalf("retraction lost devices: %d", got)
	}
}
