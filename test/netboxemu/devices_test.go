package netboxemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPaginationReachesLastPage(t *testing.T) {
	cases := []struct {
		devices  int
		limit    string // "" for NetBox's default
		wantSize int    // rows per full page
	}{
		{0, "", 50},
		{1, "", 50},
		{50, "", 50},
		{51, "", 50},
		{999, "7", 7},
		{2001, "1000", 1000},
		{2001, "5000", 1000}, // cut to MAX_PAGE_SIZE
		{1001, "0", 1000},    // 0 means MAX_PAGE_SIZE
		{120, "-3", 50},      // invalid: the default
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("N=%d/limit=%q", tc.devices, tc.limit), func(t *testing.T) {
			_, c := start(t, Options{Seed: 7, Devices: tc.devices})
			// brief keeps the race-enabled run quick; TestDeviceShape
			// checks whole devices.
			target := DevicesPath + "?brief=true"
			if tc.limit != "" {
				target += "&limit=" + tc.limit
			}
			results, pages := c.fetchAll(t, target)
			if want := max(1, (tc.devices+tc.wantSize-1)/tc.wantSize); len(pages) != want {
				t.Fatalf("%d pages, want %d", len(pages), want)
			}
			for k, p := range pages {
				wantRows := min(tc.wantSize, tc.devices-k*tc.wantSize)
				if p.Count == nil || *p.Count != tc.devices || len(p.Results) != max(wantRows, 0) {
					t.Fatalf("page %d: count %v, %d results; want %d and %d", k, p.Count, len(p.Results), tc.devices, wantRows)
				}
				checkLinks(t, c.base, k, tc.wantSize, p)
			}
			if got := slices.Sorted(slices.Values(idsOf(t, results))); !slices.Equal(got, seq(tc.devices)) {
				t.Fatalf("ids are not exactly 1..%d (got %d)", tc.devices, len(got))
			}
		})
	}
}

// checkLinks checks next and previous of page k as Django REST framework
// builds them: absolute, previous of page 1 without offset.
func checkLinks(t *testing.T, base string, k, size int, p page) {
	t.Helper()
	if p.Next != nil {
		u, err := url.Parse(*p.Next)
		if err != nil || !strings.HasPrefix(*p.Next, base+DevicesPath+"?") {
			t.Fatalf("next %q is not an absolute URL under %s", *p.Next, base)
		}
		if u.Query().Get("brief") != "true" {
			t.Fatalf("next %q lost the brief parameter", *p.Next)
		}
		if got := u.Query().Get("offset"); got != strconv.Itoa((k+1)*size) {
			t.Fatalf("page %d next offset %q, want %d", k, got, (k+1)*size)
		}
	}
	switch {
	case k == 0 && p.Previous != nil:
		t.Fatalf("first page previous %q, want null", *p.Previous)
	case k == 1 && (p.Previous == nil || strings.Contains(*p.Previous, "offset=")):
		t.Fatalf("second page previous %v, want a URL without offset", p.Previous)
	case k > 1:
		u, err := url.Parse(*p.Previous)
		if err != nil || u.Query().Get("offset") != strconv.Itoa((k-1)*size) {
			t.Fatalf("page %d previous %q, want offset %d", k, *p.Previous, (k-1)*size)
		}
	}
}

func TestNextKeepsFilters(t *testing.T) {
	_, c := start(t, Options{Seed: 3, Devices: 400})
	rep, err := c.get(context.Background(), DevicesPath+"?status=active&limit=10&brief=true")
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodePage(rep)
	if err != nil {
		t.Fatal(err)
	}
	want := c.base + DevicesPath + "?brief=true&limit=10&offset=10&status=active"
	if p.Next == nil || *p.Next != want {
		t.Fatalf("next %v, want %s", p.Next, want)
	}
	if !bytes.Contains(rep.body, []byte(`"next":"`+want+`"`)) {
		t.Fatalf("next is escaped in %s", rep.body[:200])
	}
}

func TestMissingSlashRedirects(t *testing.T) {
	s, c := start(t, Options{Devices: 3})
	noFollow := *c.hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c2 := *c
	c2.hc = &noFollow
	rep, err := c2.get(context.Background(), "/api/dcim/devices?limit=2")
	if err != nil {
		t.Fatal(err)
	}
	if rep.status != http.StatusMovedPermanently || rep.header.Get("Location") != DevicesPath+"?limit=2" {
		t.Fatalf("status %d Location %q, want 301 to %s?limit=2", rep.status, rep.header.Get("Location"), DevicesPath)
	}
	// A client that follows redirects (keeping the header on the same host)
	// gets the list.
	if _, err := decodePage(must(c.get(context.Background(), "/api/dcim/devices?limit=2"))); err != nil {
		t.Fatalf("following the redirect: %v", err)
	}
	rep = must(c.get(context.Background(), "/api/dcim/nothing/"))
	if rep.status != http.StatusNotFound || string(rep.body) != `{"detail":"Not found."}` {
		t.Fatalf("unknown path: %d %s", rep.status, rep.body)
	}
	if st := s.Stats(); st.Redirects != 2 || st.NotFound != 1 || st.DevicePages != 1 {
		t.Fatalf("stats %+v, want 2 redirects, 1 not found, 1 page", st)
	}
}

func must(rep reply, err error) reply {
	if err != nil {
		panic(err)
	}
	return rep
}

// TestDeviceFilters checks each filter's result against the devices' own
// fields, and MatchingDeviceIDs against both.
func TestDeviceFilters(t *testing.T) {
	const n = 1200
	s, c := start(t, Options{Seed: 11, Devices: n})
	all := decodeAll[Device](t, must0(c.fetchAll(t, DevicesPath+"?limit=1000")))
	hasTag := func(d Device, slug string) bool {
		return slices.ContainsFunc(d.Tags, func(t TagRef) bool { return t.Slug == slug })
	}
	if all[17].Name == nil {
		t.Fatal("device 18 has no name; pick another")
	}
	someName := *all[17].Name
	since := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		filter string
		want   func(Device) bool
	}{
		{"status=active", func(d Device) bool { return d.Status.Value == "active" }},
		{"status=offline&status=failed", func(d Device) bool { return d.Status.Value == "offline" || d.Status.Value == "failed" }},
		{"site=hq", func(d Device) bool { return d.Site.Slug == "hq" }},
		{"site_id=2", func(d Device) bool { return d.Site.ID == 2 }},
		{"site=hq&site=lab", func(d Device) bool { return d.Site.Slug == "hq" || d.Site.Slug == "lab" }},
		{"role=server", func(d Device) bool { return d.Role.Slug == "server" }},
		{"tenant=acme", func(d Device) bool { return d.Tenant != nil && d.Tenant.Slug == "acme" }},
		{"tag=monitored", func(d Device) bool { return hasTag(d, "monitored") }},
		{"tag=monitored&tag=critical", func(d Device) bool { return hasTag(d, "monitored") && hasTag(d, "critical") }},
		{"has_primary_ip=false", func(d Device) bool { return d.PrimaryIP == nil }},
		{"q=SW-0000", func(d Device) bool { return d.Name != nil && strings.Contains(*d.Name, "sw-0000") }},
		{"name=" + someName, func(d Device) bool { return d.Name != nil && *d.Name == someName }},
		{"id=5&id=77", func(d Device) bool { return d.ID == 5 || d.ID == 77 }},
		{"cf_criticality=high", func(d Device) bool { return d.CustomFields.Criticality == "high" }},
		{"cf_monitored=false", func(d Device) bool { return !d.CustomFields.Monitored }},
		{"cf_asset_owner=netops", func(d Device) bool { return d.CustomFields.AssetOwner != nil && *d.CustomFields.AssetOwner == "netops" }},
		{"last_updated__gte=2025-06-01", func(d Device) bool {
			ts, err := time.Parse(timeLayout, d.LastUpdated)
			return err == nil && !ts.Before(since)
		}},
		{"status=active&site=dc-east&role=access-switch", func(d Device) bool {
			return d.Status.Value == "active" && d.Site.Slug == "dc-east" && d.Role.Slug == "access-switch"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			var want []int
			for _, d := range all {
				if tc.want(d) {
					want = append(want, d.ID)
				}
			}
			slices.Sort(want)
			if len(want) == 0 || len(want) == n && tc.filter != "" {
				t.Fatalf("filter selects %d of %d devices: the case proves nothing", len(want), n)
			}
			got, _ := c.fetchAll(t, DevicesPath+"?fields=id&limit=250&"+tc.filter)
			if ids := slices.Sorted(slices.Values(idsOf(t, got))); !slices.Equal(ids, want) {
				t.Fatalf("got %d ids, want %d", len(ids), len(want))
			}
			predicted, err := s.MatchingDeviceIDs(tc.filter)
			if err != nil || !slices.Equal(predicted, want) {
				t.Fatalf("MatchingDeviceIDs: %d ids, %v; want %d", len(predicted), err, len(want))
			}
		})
	}
}

func must0[T, U any](t T, _ U) T { return t }

func TestInvalidFilterValues(t *testing.T) {
	s, c := start(t, Options{Devices: 20})
	cases := []struct {
		target string
		want   string
	}{
		{DevicesPath + "?site=nowhere", `{"site":["Select a valid choice. nowhere is not one of the available choices."]}`},
		{DevicesPath + "?status=bogus", `{"status":["Select a valid choice. bogus is not one of the available choices."]}`},
		{DevicesPath + "?tag=nope&role=king", `{"role":["Select a valid choice. king is not one of the available choices."],"tag":["Select a valid choice. nope is not one of the available choices."]}`},
		{DevicesPath + "?site_id=99", `{"site_id":["Select a valid choice. 99 is not one of the available choices."]}`},
		{InterfacesPath + "?device_id=21", `{"device_id":["Select a valid choice. 21 is not one of the available choices."]}`},
		{VMInterfacesPath + "?virtual_machine_id=1", `{"virtual_machine_id":["Select a valid choice. 1 is not one of the available choices."]}`},
		{VirtualMachinesPath + "?status=inventory", `{"status":["Select a valid choice. inventory is not one of the available choices."]}`},
	}
	for _, tc := range cases {
		rep := must(c.get(context.Background(), tc.target))
		if rep.status != http.StatusBadRequest || string(rep.body) != tc.want {
			t.Errorf("%s: %d %s, want 400 %s", tc.target, rep.status, rep.body, tc.want)
		}
	}
	if _, err := s.MatchingDeviceIDs("site=nowhere"); err == nil {
		t.Error("MatchingDeviceIDs accepted an unknown site")
	}
}

// TestDeviceShape checks a device's JSON against REFERENCE.md's field list.
func TestDeviceShape(t *testing.T) {
	_, c := start(t, Options{Seed: 1, Devices: 400})
	raws, _ := c.fetchAll(t, DevicesPath+"?limit=1000")
	var unnamed, withV6, withoutIP bool
	for _, raw := range raws {
		var d map[string]any
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"id", "name", "display", "status", "role", "site", "tenant", "platform", "serial",
			"asset_tag", "device_type", "primary_ip4", "primary_ip6", "primary_ip", "tags", "custom_fields",
			"created", "last_updated", "config_context", "url"} {
			if _, ok := d[f]; !ok {
				t.Fatalf("device %v lacks %q", d["id"], f)
			}
		}
		st := d["status"].(map[string]any)
		site := d["site"].(map[string]any)
		dt := d["device_type"].(map[string]any)
		if st["value"] == nil || st["label"] == nil || site["id"] == nil || site["name"] == nil || site["slug"] == nil ||
			dt["manufacturer"] == nil || dt["model"] == nil {
			t.Fatalf("device %v: nested objects incomplete: %v %v %v", d["id"], st, site, dt)
		}
		for _, f := range []string{"created", "last_updated"} {
			if _, err := time.Parse("2006-01-02T15:04:05.000000Z", d[f].(string)); err != nil {
				t.Fatalf("%s %q: %v", f, d[f], err)
			}
		}
		ip4, _ := d["primary_ip4"].(map[string]any)
		ip6, _ := d["primary_ip6"].(map[string]any)
		primary, _ := d["primary_ip"].(map[string]any)
		if ip4 != nil && (ip4["id"] == nil || !strings.Contains(ip4["address"].(string), "/") || ip4["dns_name"] == nil) {
			t.Fatalf("primary_ip4 %v lacks id, address/len or dns_name", ip4)
		}
		switch {
		case ip6 != nil && primary["address"] != ip6["address"],
			ip6 == nil && ip4 != nil && primary["address"] != ip4["address"],
			ip4 == nil && ip6 == nil && primary != nil:
			t.Fatalf("primary_ip %v does not follow primary_ip6 %v then primary_ip4 %v", primary, ip6, ip4)
		}
		unnamed = unnamed || d["name"] == nil
		withV6 = withV6 || ip6 != nil
		withoutIP = withoutIP || primary == nil
	}
	if !unnamed || !withV6 || !withoutIP {
		t.Fatalf("400 devices lack variety: unnamed %v, IPv6 %v, no IP %v", unnamed, withV6, withoutIP)
	}
}

func TestTrimmedObjects(t *testing.T) {
	_, c := start(t, Options{Devices: 30})
	cases := []struct {
		query string
		want  func(keys map[string]bool) bool
	}{
		{"brief=true", func(k map[string]bool) bool {
			return len(k) == 5 && k["id"] && k["url"] && k["display"] && k["name"] && k["description"]
		}},
		{"fields=id,name,primary_ip4", func(k map[string]bool) bool { return len(k) == 3 && k["primary_ip4"] }},
		{"exclude=config_context", func(k map[string]bool) bool { return !k["config_context"] && k["custom_fields"] && len(k) > 30 }},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			raws, _ := c.fetchAll(t, DevicesPath+"?"+tc.query)
			for _, obj := range decodeAll[map[string]json.RawMessage](t, raws) {
				keys := map[string]bool{}
				for k := range obj {
					keys[k] = true
				}
				if !tc.want(keys) {
					t.Fatalf("fields %v", keys)
				}
			}
		})
	}
}

func TestCursorPaging(t *testing.T) {
	_, c := start(t, Options{Seed: 8, Devices: 700})
	for _, filter := range []string{"", "&status=active"} {
		t.Run("filter="+filter, func(t *testing.T) {
			byOffset, _ := c.fetchAll(t, DevicesPath+"?fields=id&limit=100"+filter)
			byCursor, pages := c.fetchAll(t, DevicesPath+"?fields=id&start=0&limit=100"+filter)
			cursorIDs := idsOf(t, byCursor)
			if !slices.IsSorted(cursorIDs) || !slices.Equal(cursorIDs, slices.Sorted(slices.Values(idsOf(t, byOffset)))) {
				t.Fatal("cursor pages are not the offset pages' devices in id order")
			}
			for k, p := range pages {
				if p.Count != nil || p.Previous != nil {
					t.Fatalf("cursor page %d: count %v previous %v, want null", k, p.Count, p.Previous)
				}
				if p.Next != nil {
					u, _ := url.Parse(*p.Next)
					last := idsOf(t, p.Results)[len(p.Results)-1]
					if u.Query().Get("start") != strconv.Itoa(last+1) {
						t.Fatalf("next %s, want start=%d", *p.Next, last+1)
					}
				}
			}
		})
	}
	rep := must(c.get(context.Background(), DevicesPath+"?start=1&offset=5"))
	if rep.status != http.StatusBadRequest {
		t.Fatalf("start with offset: %d, want 400", rep.status)
	}
}

// TestDeterminism serves the same request from servers with the same and a
// different seed, through ServeHTTP so that the Host is the same.
func TestDeterminism(t *testing.T) {
	body := func(seed uint64) []byte {
		s := New(Options{Seed: seed, Devices: 5000})
		req := httptest.NewRequest(http.MethodGet, "http://netbox.test"+DevicesPath+"?limit=300&offset=1200&status=active", nil)
		req.Header.Set("Authorization", "Token "+s.V1Token())
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	a, b, other := body(42), body(42), body(43)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different pages")
	}
	if bytes.Equal(a, other) {
		t.Fatal("different seeds gave the same page")
	}
}

func TestAddressesAreUnique(t *testing.T) {
	s := New(Options{Seed: 2, Devices: 20000})
	seen := map[string]int{}
	for id := 1; id <= 20000; id++ {
		d, _ := s.Device(id, "http://x")
		for _, ip := range []*IPRef{d.PrimaryIP4, d.PrimaryIP6} {
			if ip == nil {
				continue
			}
			addr, _, _ := strings.Cut(ip.Address, "/")
			if prev, dup := seen[addr]; dup {
				t.Fatalf("%s on devices %d and %d", addr, prev, id)
			}
			seen[addr] = id
		}
	}
}

// TestMillionDevicesAreCheap pages the tail of a 1,000,000-device inventory
// by cursor: nothing is generated beyond the page asked for. (A limit/offset
// page orders the whole selection by name once.)
func TestMillionDevicesAreCheap(t *testing.T) {
	const n = 1_000_000
	_, c := start(t, Options{Seed: 99, Devices: n})
	p, err := decodePage(must(c.get(context.Background(), DevicesPath+"?limit=1000&start=999001")))
	if err != nil {
		t.Fatal(err)
	}
	ids := idsOf(t, p.Results)
	if p.Count != nil || p.Next != nil || len(ids) != 1000 || ids[999] != n {
		t.Fatalf("tail page: count %v next %v rows %d", p.Count, p.Next, len(ids))
	}
	p, err = decodePage(must(c.get(context.Background(), InterfacesPath+"?limit=1")))
	if err != nil || *p.Count != 3*n {
		t.Fatalf("interfaces: %v, count %v, want %d", err, p.Count, 3*n)
	}
}

func TestDeviceLookup(t *testing.T) {
	s := New(Options{Devices: 5})
	if _, ok := s.Device(6, "http://x"); ok {
		t.Fatal("Device(6) found a device in an inventory of 5")
	}
	d, ok := s.Device(5, "http://x/")
	if !ok || d.URL != "http://x/api/dcim/devices/5/" {
		t.Fatalf("Device(5): %v %q", ok, d.URL)
	}
	var verr validationErrors
	if _, err := s.MatchingDeviceIDs("status=nope"); !errors.As(err, &verr) {
		t.Fatalf("MatchingDeviceIDs error %v is not a validation error", err)
	}
}
