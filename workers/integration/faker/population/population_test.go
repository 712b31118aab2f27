package population_test

import (
	"net/netip"
	"testing"

	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

func TestMACsAreUniqueRealVendorUnicast(t *testing.T) {
	for _, tc := range []struct {
		name    string
		realm   population.Realm
		seed    uint64
		devices int
		macs    int
	}{
		{"many devices, one MAC", population.RealmFaker, 1, 300_000, 1},
		{"devices with many MACs", population.RealmArmis, 5, 2000, 200},
		{"last ordinals, last MACs", population.RealmNetBox, 9, 4, population.MaxMACs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(map[population.Addr]bool, tc.devices*tc.macs)
			first := 0
			if tc.devices < 10 {
				first = population.MaxDevices - tc.devices
			}
			for i := first; i < first+tc.devices; i++ {
				for k := range tc.macs {
					a := population.MAC(tc.realm, tc.seed, i, k)
					if seen[a] {
						t.Fatalf("MAC %s of device %d k %d repeats", a, i, k)
					}
					seen[a] = true
					if a[0]&0x03 != 0 {
						t.Fatalf("MAC %s is locally administered or multicast", a)
					}
					if _, ok := population.VendorOf(a); !ok {
						t.Fatalf("MAC %s is under no vendor OUI", a)
					}
					if a.OUI() == "00000C" || a.OUI() == "0007B4" || a.OUI() == "00005E" {
						t.Fatalf("MAC %s is under a first-hop redundancy prefix", a)
					}
				}
			}
		})
	}
}

func TestRealmsAndSeedsDiffer(t *testing.T) {
	same := 0
	owner := map[string]population.Realm{}
	for i := range 1000 {
		a := population.MAC(population.RealmFaker, 1, i, 0)
		if a == population.MAC(population.RealmFaker, 2, i, 0) {
			same++
		}
		for _, r := range []population.Realm{population.RealmFaker, population.RealmArmis, population.RealmNetBox, population.RealmShared} {
			for k := range 4 {
				o := population.MAC(r, 1, i, k).OUI()
				if prev, ok := owner[o]; ok && prev != r {
					t.Fatalf("realms %d and %d share OUI %s", prev, r, o)
				}
				owner[o] = r
			}
		}
		if a != population.MAC(population.RealmFaker, 1, i, 0) {
			t.Fatalf("MAC of device %d is not deterministic", i)
		}
	}
	if same != 0 {
		t.Fatalf("%d of 1000 MACs equal across realms or seeds", same)
	}
}

func TestOverlapIsTheSameDeviceEverywhere(t *testing.T) {
	o := population.Overlap{Seed: 3, Percent: 20}
	shared := 0
	v4 := map[netip.Addr]bool{}
	for i := range 1000 {
		if o.Shared(i) {
			shared++
		}
		a, b := o.Device(i), population.Overlap{Seed: 3, Percent: 50}.Device(i)
		if a != b {
			t.Fatalf("shared device %d: %+v and %+v", i, a, b)
		}
		if !netip.MustParsePrefix("198.18.0.0/15").Contains(a.IPv4) || v4[a.IPv4] {
			t.Fatalf("shared device %d: IPv4 %s outside 198.18.0.0/15 or repeated", i, a.IPv4)
		}
		v4[a.IPv4] = true
		if !netip.MustParsePrefix("2001:db8:5ea::/48").Contains(a.IPv6) {
			t.Fatalf("shared device %d: IPv6 %s", i, a.IPv6)
		}
	}
	if shared != 200 {
		t.Fatalf("%d of 1000 ordinals shared at 20%%, want 200", shared)
	}
	if (population.Overlap{Seed: 3}).Shared(0) || o.Shared(population.MaxShared) {
		t.Fatal("a zero share or an ordinal past MaxShared is shared")
	}
}

func TestVirtualMACs(t *testing.T) {
	for _, tc := range []struct {
		got  population.Addr
		want string
	}{
		{population.HSRPv1MAC(0x2a), "00:00:0C:07:AC:2A"},
		{population.HSRPv2MAC(0x123), "00:00:0C:9F:F1:23"},
		{population.VRRPMAC(7), "00:00:5E:00:01:07"},
		{population.VRRPv6MAC(7), "00:00:5E:00:02:07"},
		{population.GLBPMAC(0x101, 2), "00:07:B4:01:01:02"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}
