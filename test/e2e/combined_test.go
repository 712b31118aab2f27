package e2e_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/gateway/dire"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// TestOneTenantThreeSources runs a Faker, an Armis and a NetBox source for
// ONE tenant and partition, the three inventories overlapping as production
// ones do (a share of devices known to all of them under the same MAC, IPs
// and name; router pairs sharing HSRP/VRRP virtual MACs; IPs moving between
// devices), and checks DIRE's merges on the real gateway and PostgreSQL:
//   - a device in several inventories is one canonical device holding each
//     inventory's identifier;
//   - routers sharing a virtual MAC stay apart, and the virtual MAC is no
//     strong identifier;
//   - a DHCP move (the Faker swaps IPs between devices each pass) merges
//     nothing: the device count stays as it was.
func TestOneTenantThreeSources(t *testing.T) {
	ctx := context.Background()
	const slug, nArmis, nNetBox, nFaker = "initech", 3000, 1500, 2000
	overlap := population.Overlap{Seed: 42, Percent: 10}
	// lastSeen spread over the 30 days before now: the default staleness
	// (30 days) keeps every Armis device available.
	armis := armisemu.New(armisemu.Options{Seed: 5, Devices: nArmis, Overlap: overlap, RedundancyPairEvery: 100, Epoch: time.Now().UTC()})
	armisURL := armis.Start()
	defer armis.Close()
	netbox := netboxemu.New(netboxemu.Options{Seed: 6, Devices: nNetBox, Overlap: overlap})
	netboxURL := netbox.Start()
	defer netbox.Close()

	ref := v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}
	src := func(name string, poll, discovery time.Duration, spec v1alpha1.IntegrationSourceSpec) *v1alpha1.IntegrationSource {
		spec.SyncServiceRef, spec.PollInterval, spec.DiscoveryInterval = ref, &metav1.Duration{Duration: poll}, &metav1.Duration{Duration: discovery}
		return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: name}, Spec: spec}
	}
	// The Faker runs whole every 30 s, churning 5% of its IPs each time.
	lab := src("lab", 30*time.Second, time.Minute, v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker,
		Faker: &v1alpha1.FakerSpec{Devices: nFaker, Seed: 1, ChurnPercent: 5,
			Overlap: &v1alpha1.FakerOverlap{Seed: int64(overlap.Seed), Percent: int32(overlap.Percent)}}})
	armisSrc := src("armis", time.Hour, time.Hour, v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationArmis, Endpoint: armisURL,
		CredentialsSecretRef: &v1alpha1.SecretReference{Name: "armis"}, Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}}, PageSize: 1000})
	netboxSrc := src("netbox", time.Hour, time.Hour, v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationNetBox, Endpoint: netboxURL,
		CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"}, PageSize: 500})
	sys := startSystem(t, []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: slug, Labels: map[string]string{v1alpha1.TenantLabel: slug}}},
		&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "armis"}, StringData: map[string]string{"secret_key": armisemu.DefaultSecretKey}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: slug, Name: "netbox"}, StringData: map[string]string{"api_token": netbox.V1Token()}},
		lab, armisSrc, netboxSrc,
	}, slug)
	test.Eventually(t, "the Faker and Armis sources synced", 3*time.Minute, func() bool {
		return sys.synced(lab, nFaker)() && sys.synced(armisSrc, nArmis)()
	})
	test.Eventually(t, "the NetBox source synced", 3*time.Minute, func() bool {
		st := sys.status(netboxSrc)
		return st.LastSyncResult == v1alpha1.SyncResultSuccess && st.DevicesDiscovered > 0
	})

	schema := store.Schema(slug)
	pool := sys.devices.Pool()
	// idsOf lists the identifiers of the device holding identifier (typ, value).
	idsOf := func(typ, value string) (string, map[string][]string) {
		t.Helper()
		var uid string
		if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT device_uid FROM %s.device_identifiers WHERE identifier_type = $1 AND identifier_value = $2`, schema),
			typ, value).Scan(&uid); err != nil {
			t.Fatalf("the device of %s %s: %v", typ, value, err)
		}
		rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT identifier_type, identifier_value FROM %s.device_identifiers WHERE device_uid = $1`, schema), uid)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string][]string{}
		for rows.Next() {
			var ty, v string
			if err := rows.Scan(&ty, &v); err != nil {
				t.Fatal(err)
			}
			out[ty] = append(out[ty], v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return uid, out
	}

	// A device in several inventories is one device with each one's id.
	shared, netboxShared := 0, 0
	for i := range nNetBox {
		if !overlap.Shared(i) {
			continue
		}
		shared++
		mac := results.NormalizeMAC(overlap.Device(i).MAC.String())
		uid, ids := idsOf(dire.TypeMAC, mac)
		want := map[string]string{"armis_device_id": strconv.Itoa(i + 1), "faker_device_id": strconv.Itoa(i + 1)}
		for typ, v := range want {
			if len(ids[typ]) != 1 || ids[typ][0] != v {
				t.Fatalf("shared device %d (%s, MAC %s): %s %v, want %s; identifiers %v", i, uid, mac, typ, ids[typ], v, ids)
			}
		}
		// NetBox reports a decommissioning device as retracted, not as seen.
		if d, ok := netbox.Device(i+1, netboxURL); !ok || d.Status.Value == "decommissioning" {
			continue
		}
		if len(ids["netbox_device_id"]) != 1 {
			t.Fatalf("shared device %d (%s, MAC %s): netbox ids %v, want one; identifiers %v", i, uid, mac, ids["netbox_device_id"], ids)
		}
		netboxShared++
	}
	if shared == 0 || netboxShared == 0 {
		t.Fatalf("%d shared devices checked, %d of them in NetBox", shared, netboxShared)
	}

	// Routers of a redundancy pair stay two devices, and no other
	// inventory's router joins them through the virtual MAC they share.
	routers := map[string]bool{}
	for i := range nArmis {
		if i%100 < 98 || overlap.Shared(i) {
			continue
		}
		uid, ids := idsOf("armis_device_id", strconv.Itoa(i+1))
		if routers[uid] || len(ids["netbox_device_id"]) > 0 || len(ids["faker_device_id"]) > 0 {
			t.Fatalf("pair router %d merged with another device (%s): identifiers %v", i, uid, ids)
		}
		routers[uid] = true
	}
	// Not vacuous: the pair routers did report their virtual MACs.
	if n := sys.count(slug, `lower(metadata->>'all_macs') SIMILAR TO '%(00:00:0c:07:ac|00:00:5e:00:01)%'`); n < len(routers) {
		t.Fatalf("%d devices report a virtual MAC, want at least the %d pair routers", n, len(routers))
	}
	var virtual int
	if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.device_identifiers WHERE identifier_type = $1
AND (identifier_value LIKE '00000C07AC%%' OR identifier_value LIKE '00005E0001%%' OR identifier_value LIKE '00005E0002%%' OR identifier_value LIKE '0007B40%%')`, schema),
		dire.TypeMAC).Scan(&virtual); err != nil || virtual != 0 {
		t.Fatalf("%d virtual MACs are strong identifiers (%v)", virtual, err)
	}

	// DHCP moves merge nothing: after the Faker's next pass, whose churn
	// moved 5% of its IPs to other devices (and onto addresses Armis
	// devices hold too), the tenant has as many devices as before, each
	// Faker id still on its own device.
	fakerIPs := func() map[string]string {
		rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT i.identifier_value, d.ip FROM %[1]s.device_identifiers i
JOIN %[1]s.ocsf_devices d ON d.uid = i.device_uid WHERE i.identifier_type = 'faker_device_id'`, schema))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var id, ip string
			if err := rows.Scan(&id, &ip); err != nil {
				t.Fatal(err)
			}
			out[id] = ip
		}
		return out
	}
	before, total, run := fakerIPs(), sys.count(slug, "true"), sys.status(lab).LastRunID
	test.Eventually(t, "the Faker's next pass", 2*time.Minute, func() bool {
		st := sys.status(lab)
		return st.LastRunID != run && st.LastSyncResult == v1alpha1.SyncResultSuccess
	})
	after := fakerIPs()
	moved := 0
	for id, ip := range after {
		if before[id] != ip {
			moved++
		}
	}
	if len(after) != nFaker || moved == 0 {
		t.Fatalf("after the churn: %d Faker devices (want %d), %d moved IPs (want some)", len(after), nFaker, moved)
	}
	if n := sys.count(slug, "true"); n != total {
		t.Fatalf("%d devices after the DHCP moves, %d before: IP churn merged or split devices", n, total)
	}
}
