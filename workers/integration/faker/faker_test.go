package faker_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/pagesize"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/faker"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

func pass(t *testing.T, c *faker.Client) []results.DeviceUpdate {
	t.Helper()
	var all []results.DeviceUpdate
	if err := c.Fetch(context.Background(), func(_ context.Context, page []results.DeviceUpdate) error {
		all = append(all, page...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

func newClient(t *testing.T, devices, churn int32, seed int64) *faker.Client {
	t.Helper()
	c, err := faker.New(integration.Config{Source: bundle.Source{Type: "faker", Partition: "default", IntegrationSourceUID: "u",
		Faker: &bundle.Faker{Devices: devices, ChurnPercent: churn, Seed: seed}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFakerIsDeterministicAndChurnsOnlyIPs(t *testing.T) {
	const n = 5000
	a, b := newClient(t, n, 10, 7), newClient(t, n, 10, 7)
	first, same := pass(t, a), pass(t, b)
	if len(first) != n {
		t.Fatalf("%d devices, want %d", len(first), n)
	}
	ips := map[string]bool{}
	macs := map[string]bool{}
	many := 0
	for i, d := range first {
		if d.IP != same[i].IP || d.Metadata[faker.MetaDeviceID] != same[i].Metadata[faker.MetaDeviceID] || d.Metadata["all_macs"] != same[i].Metadata["all_macs"] {
			t.Fatalf("device %d differs between two clients with one seed", i)
		}
		if a, err := netip.ParseAddr(d.IP); err != nil || !netip.MustParsePrefix("172.16.0.0/12").Contains(a) || ips[d.IP] {
			t.Fatalf("device %d: IP %s outside 172.16.0.0/12 or repeated", i, d.IP)
		}
		ips[d.IP] = true
		all := strings.Split(d.Metadata["all_macs"], ",")
		if len(all) < 1 || len(all) > 200 {
			t.Fatalf("device %d has %d MACs", i, len(all))
		}
		if len(all) > 10 {
			many++
		}
		for _, m := range all {
			n := results.NormalizeMAC(m)
			if n == "" || results.LocallyAdministered(n) || macs[n] {
				t.Fatalf("device %d: MAC %s unusable or repeated", i, m)
			}
			macs[n] = true
		}
	}
	if many == 0 || many > n/5 {
		t.Fatalf("%d devices with more than 10 MACs: not weighted towards few", many)
	}
	second := pass(t, a)
	moved := 0
	for i := range first {
		if first[i].Metadata[faker.MetaDeviceID] != second[i].Metadata[faker.MetaDeviceID] || first[i].Metadata["all_macs"] != second[i].Metadata["all_macs"] {
			t.Fatalf("device %d changed identity between passes", i)
		}
		if first[i].IP != second[i].IP {
			moved++
		}
	}
	if moved != n*10/100 {
		t.Fatalf("%d of %d IPs moved with 10%% churn, want exactly %d", moved, n, n*10/100)
	}
}

func TestFakerRefusesBadSpecsNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		faker *bundle.Faker
		want  string
	}{
		{nil, "faker settings"},
		{&bundle.Faker{Devices: 0}, "faker.devices"},
		{&bundle.Faker{Devices: 2_000_000}, "faker.devices"},
		{&bundle.Faker{Devices: 10, ChurnPercent: 101}, "faker.churnPercent"},
	} {
		if _, err := faker.New(integration.Config{Source: bundle.Source{Faker: tc.faker}}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.faker, err, tc.want)
		}
	}
}

// TestFakerLooksLikeProductionAndOverlapsArmis: MACs under real vendor OUIs
// whose vendor the device names, and with an overlap the shared devices are
// the ones the Armis emulator, given the same overlap, reports with the same
// MAC, IP and hostname.
func TestFakerLooksLikeProductionAndOverlapsArmis(t *testing.T) {
	o := population.Overlap{Seed: 4, Percent: 10}
	c, err := faker.New(integration.Config{Source: bundle.Source{Type: "faker", Partition: "default", IntegrationSourceUID: "u",
		Faker: &bundle.Faker{Devices: 1000, Seed: 3, OverlapSeed: int64(o.Seed), OverlapPercent: int32(o.Percent)}}})
	if err != nil {
		t.Fatal(err)
	}
	emu := armisemu.New(armisemu.Options{Seed: 9, Devices: 1000, Overlap: o})
	shared := 0
	for i, u := range pass(t, c) {
		hw, err := net.ParseMAC(u.MAC)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := population.VendorOf(population.Addr(hw))
		if !ok || v.Name != u.Metadata["vendor"] {
			t.Fatalf("device %d: MAC %s is not under an OUI of its vendor %q", i, u.MAC, u.Metadata["vendor"])
		}
		d, _ := emu.Device(i + 1)
		same := d.MacAddress != nil && results.NormalizeMAC(*d.MacAddress) == results.NormalizeMAC(u.MAC) &&
			d.IPAddress != nil && *d.IPAddress == u.IP && d.Name == u.Hostname
		if same != o.Shared(i) {
			t.Fatalf("device %d: shared %v, but Armis reports it alike: %v (%+v / %+v)", i, o.Shared(i), same, u, d)
		}
		if same {
			shared++
		}
	}
	if shared != 100 {
		t.Fatalf("%d devices shared at 10%% of 1000", shared)
	}
}

// TestPagesFollowThePageSizeTable checks that the Faker pages by the table of
// wire/pagesize: its default when the source sets no page size, the source's
// page size otherwise, capped at the table's maximum.
func TestPagesFollowThePageSizeTable(t *testing.T) {
	limits := pagesize.MustFor(faker.IntegrationType)
	cases := []struct {
		name     string
		pageSize int32
		want     int
	}{
		{"unset takes the default", 0, int(limits.Default)},
		{"set", 7, 7},
		{"above the maximum is capped", limits.Max + 1, int(limits.Max)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			devices := 2*tc.want + 1
			c, err := faker.New(integration.Config{Source: bundle.Source{Type: faker.IntegrationType, Partition: "default",
				IntegrationSourceUID: "u", PageSize: tc.pageSize, Faker: &bundle.Faker{Devices: int32(devices), Seed: 1}}}) //nolint:gosec // small
			if err != nil {
				t.Fatal(err)
			}
			var sizes []int
			if err := c.Fetch(context.Background(), func(_ context.Context, page []results.DeviceUpdate) error {
				sizes = append(sizes, len(page))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if want := []int{tc.want, tc.want, 1}; !slices.Equal(sizes, want) {
				t.Errorf("page sizes %v, want %v", sizes, want)
			}
		})
	}
}
