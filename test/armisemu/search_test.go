package armisemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

func TestPaginationReachesLastPage(t *testing.T) {
	cases := []struct{ devices, length int }{
		{0, 100},
		{1, 100},
		{99, 100},
		{100, 100},
		{101, 100},
		{1000, 7},
		{5001, 5000},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("N=%d/length=%d", tc.devices, tc.length), func(t *testing.T) {
			_, c := start(t, Options{Seed: 7, Devices: tc.devices})
			// fields=id keeps the race-enabled run quick; TestDeviceShape
			// checks whole devices.
			devs, pages := c.fetchAll(t, c.token(t), "in:devices", tc.length, url.Values{"fields": {"id"}})

			wantPages := max(1, (tc.devices+tc.length-1)/tc.length)
			if len(pages) != wantPages {
				t.Fatalf("%d pages, want %d", len(pages), wantPages)
			}
			for k, p := range pages {
				from := k * tc.length
				wantCount := min(tc.length, tc.devices-from)
				if tc.devices == 0 {
					wantCount = 0
				}
				if p.Data.Total != tc.devices || p.Data.Count != wantCount || len(p.Data.Results) != wantCount || !p.Success {
					t.Fatalf("page %d: total %d count %d results %d success %v, want total %d count %d",
						k, p.Data.Total, p.Data.Count, len(p.Data.Results), p.Success, tc.devices, wantCount)
				}
				if k == 0 && p.Data.Prev != nil {
					t.Fatalf("first page prev %d, want null", *p.Data.Prev)
				}
				if k > 0 && (p.Data.Prev == nil || *p.Data.Prev != from-tc.length) {
					t.Fatalf("page %d prev %v, want %d", k, p.Data.Prev, from-tc.length)
				}
			}
			want := make([]int, tc.devices)
			for i := range want {
				want[i] = i + 1
			}
			if got := ids(devs); !slices.Equal(got, want) {
				t.Fatalf("ids are not exactly 1..%d in order (got %d ids)", tc.devices, len(got))
			}
		})
	}
}

func TestPageBeyondTheEnd(t *testing.T) {
	_, c := start(t, Options{Devices: 10})
	rep, err := c.search(context.Background(), c.token(t), "in:devices", 50, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodePage(rep)
	if err != nil {
		t.Fatal(err)
	}
	if p.Data.Count != 0 || p.Data.Next != nil || p.Data.Total != 10 || !strings.Contains(string(rep.body), `"results":[]`) {
		t.Fatalf("page past the end: %s", rep.body)
	}
}

func TestBadSearchRequests(t *testing.T) {
	_, c := start(t, Options{Devices: 10})
	tok := c.token(t)
	cases := []struct {
		name   string
		params url.Values
	}{
		{"missing aql", url.Values{}},
		{"other entity", url.Values{"aql": {"in:alerts"}}},
		{"no in term", url.Values{"aql": {`timeFrame:"3 Days"`}}},
		{"unknown term", url.Values{"aql": {"in:devices color:blue"}}},
		{"bad timeFrame", url.Values{"aql": {`in:devices timeFrame:"3 Fortnights"`}}},
		{"bad after", url.Values{"aql": {"in:devices after:yesterday"}}},
		{"open quote", url.Values{"aql": {`in:devices boundaries:"Corporate`}}},
		{"negative from", url.Values{"aql": {"in:devices"}, "from": {"-1"}}},
		{"zero length", url.Values{"aql": {"in:devices"}, "length": {"0"}}},
		{"length above 5000", url.Values{"aql": {"in:devices"}, "length": {"5001"}}},
		{"bad orderBy", url.Values{"aql": {"in:devices"}, "orderBy": {"name"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, c.base+SearchPath+"?"+tc.params.Encode(), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", tok)
			rep, err := c.do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			var body errorBody
			if rep.status != http.StatusBadRequest || json.Unmarshal(rep.body, &body) != nil || body.Success || body.Message == "" {
				t.Fatalf("status %d body %s, want 400 with a message", rep.status, rep.body)
			}
		})
	}
}

// TestAQLFilters checks each query's pages against the devices' own fields:
// the filters and the rendered devices agree, and MatchingIDs predicts the
// result.
func TestAQLFilters(t *testing.T) {
	const n = 3000
	s, c := start(t, Options{Seed: 11, Devices: n})
	tok := c.token(t)
	all := make([]Device, n)
	for i := range all {
		all[i], _ = s.Device(i + 1)
	}
	lastSeen := func(d Device) time.Time {
		ts, err := time.Parse(time.RFC3339Nano, d.LastSeen)
		if err != nil {
			t.Fatalf("device %d lastSeen %q: %v", d.ID, d.LastSeen, err)
		}
		return ts
	}
	inBoundary := func(d Device, b string) bool {
		return slices.Contains(strings.Split(d.Boundaries, ", "), b)
	}
	cutoff := DefaultEpoch().Add(-72 * time.Hour)
	after := time.Date(2025, 12, 20, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		aql  string
		want func(Device) bool
	}{
		{"in:devices", func(Device) bool { return true }},
		{`in:devices timeFrame:"3 Days"`, func(d Device) bool { return lastSeen(d).After(cutoff) }},
		{"in:devices after:2025-12-20T12:00:00", func(d Device) bool { return lastSeen(d).After(after) }},
		{`in:devices boundaries:"Corporate"`, func(d Device) bool { return inBoundary(d, "Corporate") }},
		{`in:devices boundaries:"Lab"`, func(d Device) bool { return inBoundary(d, "Lab") }},
		{`in:devices boundaries:"Guest,Medical"`, func(d Device) bool { return inBoundary(d, "Guest") || inBoundary(d, "Medical") }},
		{`in:devices boundaries:"Nowhere"`, func(Device) bool { return false }},
		{`in:devices timeFrame:"72 hours" boundaries:"Corporate"`, func(d Device) bool {
			return lastSeen(d).After(cutoff) && inBoundary(d, "Corporate")
		}},
		{`in:devices type:Switches`, func(d Device) bool { return d.Type == "Switches" }},
		{`in:devices type:"IP Cameras",Printers`, func(d Device) bool { return d.Type == "IP Cameras" || d.Type == "Printers" }},
		{`in:devices site:"DC East"`, func(d Device) bool { return d.Site.Name == "DC East" }},
		{`in:devices !type:Laptops`, func(d Device) bool { return d.Type != "Laptops" }},
		{`in:devices NOT site:HQ`, func(d Device) bool { return d.Site.Name != "HQ" }},
		{`in:devices (type:Routers OR type:Switches) site:HQ`, func(d Device) bool {
			return (d.Type == "Routers" || d.Type == "Switches") && d.Site.Name == "HQ"
		}},
		{`in:devices !(boundaries:"Guest" or timeFrame:"3 Days") and type:Servers`, func(d Device) bool {
			return !inBoundary(d, "Guest") && !lastSeen(d).After(cutoff) && d.Type == "Servers"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.aql, func(t *testing.T) {
			var want []int
			for _, d := range all {
				if tc.want(d) {
					want = append(want, d.ID)
				}
			}
			got, _ := c.fetchAll(t, tok, tc.aql, 250, url.Values{"fields": {"id"}})
			if !slices.Equal(ids(got), want) {
				t.Fatalf("got %d ids, want %d", len(got), len(want))
			}
			predicted, err := s.MatchingIDs(tc.aql)
			if err != nil || !slices.Equal(predicted, want) {
				t.Fatalf("MatchingIDs: %d ids, err %v; want %d", len(predicted), err, len(want))
			}
		})
	}
}

func TestAQLRefusals(t *testing.T) {
	s, c := start(t, Options{Seed: 11, Devices: 10})
	tok := c.token(t)
	for _, aql := range []string{
		"type:Switches", "!in:devices", "in:devices OR type:Switches", "in:devices (type:Switches",
		"in:devices type:Switches)", "in:devices ()", "in:devices (in:devices)", "in:devices color:red",
		`in:devices site:"HQ`, "in:devices in:devices",
	} {
		rep, err := c.search(context.Background(), tok, aql, 0, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", aql, rep.status)
		}
		if _, err := s.MatchingIDs(aql); err == nil {
			t.Errorf("%s: MatchingIDs accepted it", aql)
		}
	}
}

// TestQueriesOverlap shows why clients merge by id: two boundary queries
// share devices.
func TestQueriesOverlap(t *testing.T) {
	s := New(Options{Seed: 3, Devices: 2000})
	corp, err := s.MatchingIDs(`in:devices boundaries:"Corporate"`)
	if err != nil {
		t.Fatal(err)
	}
	lab, err := s.MatchingIDs(`in:devices boundaries:"Lab"`)
	if err != nil {
		t.Fatal(err)
	}
	merged := map[int]bool{}
	for _, id := range append(slices.Clone(corp), lab...) {
		merged[id] = true
	}
	if len(merged) >= len(corp)+len(lab) {
		t.Fatalf("no overlap: %d + %d devices merge to %d", len(corp), len(lab), len(merged))
	}
}

func TestAfterIsSecondGranular(t *testing.T) {
	s, c := start(t, Options{Seed: 5, Devices: 500})
	d, _ := s.Device(42)
	seen, err := time.Parse(time.RFC3339Nano, d.LastSeen)
	if err != nil {
		t.Fatal(err)
	}
	// A client resuming from this device's lastSeen can only name its
	// second, so the device comes back unless its microseconds are zero.
	aql := "in:devices after:" + seen.UTC().Format("2006-01-02T15:04:05")
	got, _ := c.fetchAll(t, c.token(t), aql, 100, url.Values{"orderBy": {"lastSeen"}})
	if seen.Nanosecond() != 0 && !slices.Contains(ids(got), 42) {
		t.Fatalf("device 42 (lastSeen %s) missing from %s", d.LastSeen, aql)
	}
}

func TestOrderByLastSeen(t *testing.T) {
	_, c := start(t, Options{Seed: 9, Devices: 1500})
	got, _ := c.fetchAll(t, c.token(t), "in:devices", 400, url.Values{"orderBy": {"lastSeen"}})
	if len(got) != 1500 {
		t.Fatalf("%d devices, want 1500", len(got))
	}
	if !slices.IsSortedFunc(got, func(a, b Device) int { return strings.Compare(a.LastSeen, b.LastSeen) }) {
		t.Fatal("devices are not in lastSeen order")
	}
	sorted := slices.Sorted(slices.Values(ids(got)))
	for i, id := range sorted {
		if id != i+1 {
			t.Fatalf("ids are not a permutation of 1..1500")
		}
	}
}

func TestFieldsTrimsDevices(t *testing.T) {
	_, c := start(t, Options{Devices: 20})
	rep, err := c.search(context.Background(), c.token(t), "in:devices", 0, 20, url.Values{"fields": {"id,ipAddress,lastSeen"}})
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Data struct {
			Results []map[string]json.RawMessage `json:"results"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rep.body, &p); err != nil {
		t.Fatalf("decoding %s: %v", rep.body, err)
	}
	for _, d := range p.Data.Results {
		if len(d) != 3 || d["id"] == nil || d["ipAddress"] == nil || d["lastSeen"] == nil {
			t.Fatalf("device has fields %v, want id, ipAddress, lastSeen", d)
		}
	}
}

func TestDeterminism(t *testing.T) {
	pageBytes := func(seed uint64) []byte {
		_, c := start(t, Options{Seed: seed, Devices: 5000})
		rep, err := c.search(context.Background(), c.token(t), `in:devices timeFrame:"7 Days"`, 200, 300, nil)
		if err != nil || rep.status != http.StatusOK {
			t.Fatalf("search: %v, %d", err, rep.status)
		}
		return rep.body
	}
	a, b, other := pageBytes(42), pageBytes(42), pageBytes(43)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different pages")
	}
	if bytes.Equal(a, other) {
		t.Fatal("different seeds gave the same page")
	}
}

// TestDeviceShape checks the JSON of a device against REFERENCE.md's field
// list and types.
func TestDeviceShape(t *testing.T) {
	_, c := start(t, Options{Seed: 1, Devices: 300})
	rep, err := c.search(context.Background(), c.token(t), "in:devices", 0, 300, nil)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Data struct {
			Results []map[string]any `json:"results"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rep.body, &p); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	isString := func(v any) bool { _, ok := v.(string); return ok }
	isNumber := func(v any) bool { _, ok := v.(float64); return ok }
	isStringOrNull := func(v any) bool { return v == nil || isString(v) }
	isObject := func(v any) bool { _, ok := v.(map[string]any); return ok }
	isList := func(v any) bool { _, ok := v.([]any); return ok }
	want := map[string]func(any) bool{
		"id": isNumber, "ipAddress": isStringOrNull, "ipv6": isStringOrNull, "macAddress": isStringOrNull,
		"name": isString, "type": isString, "category": isString, "manufacturer": isString,
		"model": isString, "operatingSystem": isString, "operatingSystemVersion": isString,
		"firstSeen": isString, "lastSeen": isString, "riskLevel": isNumber, "boundaries": isString,
		"tags": isList, "site": isObject, "sensor": isObject, "customProperties": isObject,
		"visibility": isString, "businessImpact": isString,
	}
	var multiIP, multiMAC, noMAC, multiV6, whole, fraction bool
	for _, d := range p.Data.Results {
		for field, ok := range want {
			v, present := d[field]
			if !present || !ok(v) {
				t.Fatalf("device %v: field %q is %#v", d["id"], field, v)
			}
		}
		site := d["site"].(map[string]any)
		if !isString(site["name"]) || !isString(site["location"]) {
			t.Fatalf("site %v lacks name or location", site)
		}
		for _, f := range []string{"firstSeen", "lastSeen"} {
			_, errFraction := time.Parse("2006-01-02T15:04:05.000000-07:00", d[f].(string))
			_, errWhole := time.Parse("2006-01-02T15:04:05-07:00", d[f].(string))
			if errFraction != nil && errWhole != nil {
				t.Fatalf("%s %q is not ISO 8601 with offset, with microseconds or whole seconds", f, d[f])
			}
			whole, fraction = whole || errWhole == nil, fraction || errFraction == nil
		}
		ip, _ := d["ipAddress"].(string)
		multiIP = multiIP || strings.Contains(ip, ",")
		v6, _ := d["ipv6"].(string)
		multiV6 = multiV6 || strings.Contains(v6, ",")
		mac, isMAC := d["macAddress"].(string)
		multiMAC = multiMAC || strings.Contains(mac, ",")
		noMAC = noMAC || !isMAC
		for m := range strings.SplitSeq(mac, ",") {
			if !isMAC {
				break
			}
			m = strings.TrimSpace(m)
			hw, err := net.ParseMAC(m)
			if err != nil || hw[0]&0x03 != 0 || m != strings.ToLower(m) {
				t.Fatalf("MAC %q is not a lower-case globally administered unicast MAC", m)
			}
			if _, ok := population.VendorOf(population.Addr(hw)); !ok {
				t.Fatalf("MAC %q is under no real vendor OUI", m)
			}
		}
	}
	if !multiV6 || !whole || !fraction {
		t.Fatalf("300 devices lack variety: several IPv6 %v, whole-second times %v, microsecond times %v", multiV6, whole, fraction)
	}
	if !multiIP || !multiMAC || !noMAC {
		t.Fatalf("300 devices lack variety: several IPs %v, several MACs %v, no MAC %v", multiIP, multiMAC, noMAC)
	}
}

func TestAddressesAreUnique(t *testing.T) {
	s := New(Options{Seed: 2, Devices: 20000})
	ips, macs := map[string]int{}, map[string]int{}
	for id := 1; id <= 20000; id++ {
		d, _ := s.Device(id)
		if d.IPAddress != nil {
			for ip := range strings.SplitSeq(*d.IPAddress, ",") {
				ip = strings.TrimSpace(ip)
				if prev, dup := ips[ip]; dup {
					t.Fatalf("IP %s on devices %d and %d", ip, prev, id)
				}
				ips[ip] = id
			}
		}
		if d.MacAddress == nil {
			continue
		}
		for mac := range strings.SplitSeq(*d.MacAddress, ",") {
			mac = strings.TrimSpace(mac)
			if prev, dup := macs[mac]; dup {
				t.Fatalf("MAC %s on devices %d and %d", mac, prev, id)
			}
			macs[mac] = id
		}
	}
}

// TestMillionDevicesAreCheap pages the tail of a 1,000,000-device inventory:
// nothing is generated beyond the page asked for.
func TestMillionDevicesAreCheap(t *testing.T) {
	const n = 1_000_000
	_, c := start(t, Options{Seed: 99, Devices: n})
	rep, err := c.search(context.Background(), c.token(t), "in:devices", n-100, 5000, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodePage(rep)
	if err != nil {
		t.Fatal(err)
	}
	if p.Data.Total != n || p.Data.Count != 100 || p.Data.Next != nil || p.Data.Results[99].ID != n {
		t.Fatalf("tail page: total %d count %d next %v last id %d", p.Data.Total, p.Data.Count, p.Data.Next, p.Data.Results[99].ID)
	}
}

func TestOverlapAndRedundancyPairs(t *testing.T) {
	o := population.Overlap{Seed: 4, Percent: 10}
	s := New(Options{Seed: 8, Devices: 1000, Overlap: o, RedundancyPairEvery: 100})
	for i := range 1000 {
		d, _ := s.Device(i + 1)
		switch {
		case o.Shared(i):
			sd := o.Device(i)
			if d.MacAddress == nil || *d.MacAddress != sd.MAC.Lower() || *d.IPAddress != sd.IPv4.String() ||
				*d.IPv6 != sd.IPv6.String() || d.Name != sd.Hostname || d.Manufacturer != sd.Vendor.Name {
				t.Fatalf("shared device %d: %+v, want %+v", i, d, sd)
			}
		case i%100 >= 98:
			macs := strings.Split(*d.MacAddress, ", ")
			p := i / 100
			if d.Type != "Routers" || len(macs) != 2 ||
				(macs[1] != population.HSRPv1MAC(byte(p%255+1)).Lower() && macs[1] != population.VRRPMAC(byte(p%255+1)).Lower()) {
				t.Fatalf("pair router %d: type %s MACs %v", i, d.Type, macs)
			}
		}
	}
	a, _ := s.Device(299)
	b, _ := s.Device(300)
	if strings.Split(*a.MacAddress, ", ")[1] != strings.Split(*b.MacAddress, ", ")[1] {
		t.Fatalf("the routers of pair 2 list different virtual MACs: %s and %s", *a.MacAddress, *b.MacAddress)
	}
}
