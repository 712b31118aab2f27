package netbox

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/pagesize"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/httpretry"
)

func TestNewValidates(t *testing.T) {
	good := bundle.Source{
		Type:        IntegrationType,
		Endpoint:    "https://netbox.example.com",
		Credentials: map[string]string{CredentialAPIToken: strings.Repeat("a", 40)},
	}
	cases := []struct {
		name  string
		edit  func(*bundle.Source)
		field string // what the error must name; "" means New succeeds
	}{
		{"valid", func(*bundle.Source) {}, ""},
		{"endpoint with /api/", func(s *bundle.Source) { s.Endpoint = "https://netbox.example.com/api/" }, ""},
		{"endpoint with a path prefix", func(s *bundle.Source) { s.Endpoint = "http://proxy.example.com:8080/netbox/" }, ""},
		{"token with its scheme word", func(s *bundle.Source) {
			s.Credentials[CredentialAPIToken] = "Token " + strings.Repeat("b", 40)
		}, ""},
		{"missing endpoint", func(s *bundle.Source) { s.Endpoint = "" }, "endpoint"},
		{"relative endpoint", func(s *bundle.Source) { s.Endpoint = "netbox.example.com" }, "endpoint"},
		{"ftp endpoint", func(s *bundle.Source) { s.Endpoint = "ftp://netbox.example.com" }, "endpoint"},
		{"unparseable endpoint", func(s *bundle.Source) { s.Endpoint = "http://[::1" }, "endpoint"},
		{"endpoint with user info", func(s *bundle.Source) { s.Endpoint = "https://user:secret@netbox.example.com" }, "endpoint"},
		{"endpoint with a query", func(s *bundle.Source) { s.Endpoint = "https://netbox.example.com/?x=1" }, "endpoint"},
		{"no credentials", func(s *bundle.Source) { s.Credentials = nil }, "credentials.api_token"},
		{"blank token", func(s *bundle.Source) { s.Credentials[CredentialAPIToken] = "  \n" }, "credentials.api_token"},
		{"token with a newline inside", func(s *bundle.Source) {
			s.Credentials[CredentialAPIToken] = "abc\r\nX-Evil: 1"
		}, "credentials.api_token"},
		{"malformed query", func(s *bundle.Source) {
			s.Queries = []bundle.Query{{Label: "ok", Query: "status=active"}, {Label: "bad", Query: "site=%zz"}}
		}, "queries[1].query"},
		{"another type", func(s *bundle.Source) { s.Type = "armis" }, "type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := good
			src.Credentials = map[string]string{CredentialAPIToken: good.Credentials[CredentialAPIToken]}
			tc.edit(&src)
			c, err := New(integration.Config{Source: src}, nil)
			if tc.field == "" {
				if err != nil || c == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New accepted the source")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
			for _, secret := range []string{"secret", "X-Evil", strings.Repeat("a", 40)} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q repeats a credential", err)
				}
			}
		})
	}
}

func TestPaginationReachesTheLastPage(t *testing.T) {
	cases := []struct {
		devices, pageSize, effective int
	}{
		// Unset, the page size is the table's netbox default (wire/pagesize).
		{devices: 0, pageSize: 0, effective: int(pagesize.MustFor(pagesize.NetBox).Default)},
		{devices: 1, pageSize: 0, effective: int(pagesize.MustFor(pagesize.NetBox).Default)},
		{devices: 100, pageSize: 0, effective: int(pagesize.MustFor(pagesize.NetBox).Default)},
		{devices: 101, pageSize: 0, effective: int(pagesize.MustFor(pagesize.NetBox).Default)},
		{devices: 120, pageSize: 7, effective: 7},
		{devices: 40, pageSize: 1, effective: 1},
		{devices: 2100, pageSize: 1000, effective: 1000},
		{devices: 1001, pageSize: 5000, effective: 1000},
		{devices: 777, pageSize: 256, effective: 256},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.devices)+"_devices_page_"+strconv.Itoa(tc.pageSize), func(t *testing.T) {
			s, base := startEmu(t, netboxemu.Options{Seed: 11, Devices: tc.devices})
			c, rec := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) { src.PageSize = int32(tc.pageSize) })
			var got collector
			if err := c.Fetch(t.Context(), got.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if ids := got.ids(t); !slices.Equal(ids, reportedIDs(t, s, "")) {
				t.Fatalf("emitted %d devices, want ids 1..%d exactly once in order", len(ids), tc.devices)
			}
			wantPages := (tc.devices + tc.effective - 1) / tc.effective
			if got.pageCount() > wantPages { // a page of decommissioned devices only emits nothing
				t.Errorf("emitted %d pages, want at most %d", got.pageCount(), wantPages)
			}
			for i, p := range got.pages {
				if len(p) > tc.effective {
					t.Errorf("page %d has %d devices, over the page size %d", i+1, len(p), tc.effective)
				}
			}
			fetched := max(wantPages, 1) // an empty inventory is one empty page
			if st := s.Stats(); st.DevicePages != int64(fetched) {
				t.Errorf("emulator served %d device pages, want %d", st.DevicePages, fetched)
			}
			if rec.pageCount() != fetched+1 { // and the (empty) virtual machine list
				t.Errorf("observer saw %d pages, want %d", rec.pageCount(), fetched+1)
			}
			sum := 0
			for _, n := range rec.pages {
				sum += n
			}
			if sum != tc.devices {
				t.Errorf("observer counted %d devices, want %d", sum, tc.devices)
			}
			if f := rec.failureCounts(); len(f) != 0 {
				t.Errorf("failures %v on a clean run", f)
			}
		})
	}
}

func TestFiltersNarrowTheSet(t *testing.T) {
	const devices = 1500
	s, base := startEmu(t, netboxemu.Options{Seed: 3, Devices: devices})
	cases := []struct {
		name, query, want string // want: the filter the emulator matches with
	}{
		{"status", "status=active", "status=active"},
		{"site and role", "site=hq&role=server", "site=hq&role=server"},
		{"statuses ORed", "status=offline&status=failed", "status=offline&status=failed"},
		{"tags ANDed", "tag=monitored&tag=critical", "tag=monitored&tag=critical"},
		{"custom field", "cf_criticality=high&site=dc-east", "cf_criticality=high&site=dc-east"},
		{"no primary IP", "has_primary_ip=false", "has_primary_ip=false"},
		{"leading question mark", "?site=lab", "site=lab"},
		{"paging parameters are the client's", "status=active&limit=3&offset=100&brief=true", "status=active"},
		{"own field selection", "site=dc-west&exclude=config_context", "site=dc-west"},
		{"matches nothing", "site=lab&role=pdu&status=staged&tag=pci&tag=legacy", "site=lab&role=pdu&status=staged&tag=pci&tag=legacy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) {
				src.PageSize = 100
				src.Queries = []bundle.Query{{Label: tc.name, Query: tc.query}}
			})
			var got collector
			if err := c.Fetch(t.Context(), got.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			want := reportedIDs(t, s, tc.want)
			if ids := got.ids(t); !slices.Equal(ids, want) {
				t.Fatalf("emitted %d devices, want the %d the filter selects", len(ids), len(want))
			}
			if len(want) >= devices {
				t.Fatalf("filter %q did not narrow the set", tc.want)
			}
			for _, d := range got.devices() {
				if d.Metadata[integration.MetaQueryLabel] != tc.name {
					t.Fatalf("device %s has query_label %q", d.Metadata[MetaDeviceID], d.Metadata[integration.MetaQueryLabel])
				}
			}
			if len(rec.failureCounts()) != 0 {
				t.Errorf("failures %v", rec.failureCounts())
			}
		})
	}
}

func TestTokenSchemes(t *testing.T) {
	const devices = 180
	wrongV1 := strings.Repeat("0", 40)
	wrongV2 := "nbt_000000000000." + strings.Repeat("0", 40)
	cases := []struct {
		name    string
		opts    netboxemu.Options
		token   func(s *netboxemu.Server) string
		prepare func(s *netboxemu.Server)
		wantErr bool
		emitted int // devices emitted before a failure
	}{
		{name: "v1 token", token: (*netboxemu.Server).V1Token},
		{name: "v2 token", token: (*netboxemu.Server).V2Token},
		{name: "v1 token stored with its scheme", token: func(s *netboxemu.Server) string { return "Token " + s.V1Token() }},
		{name: "v2 token with surrounding space", token: func(s *netboxemu.Server) string { return " " + s.V2Token() + "\n" }},
		{name: "v1 key of letters and digits (a user-set key)", opts: netboxemu.Options{V1Token: "k3yOfFortyLettersAndDigitsNotHexAtAllZZ9"},
			token: (*netboxemu.Server).V1Token},
		{name: "wrong v1 token", token: func(*netboxemu.Server) string { return wrongV1 }, wantErr: true},
		{name: "wrong v2 token", token: func(*netboxemu.Server) string { return wrongV2 }, wantErr: true},
		{name: "v2 token on NetBox before 4.5", opts: netboxemu.Options{DisableV2: true},
			token: (*netboxemu.Server).V2Token, wantErr: true},
		{name: "v1 tokens disabled", opts: netboxemu.Options{DisableV1: true},
			token: (*netboxemu.Server).V1Token, wantErr: true},
		{name: "expired token", token: (*netboxemu.Server).V1Token,
			prepare: (*netboxemu.Server).ExpireTokens, wantErr: true},
		// Each page costs a device, an interface and an IP address request:
		// the token expires on the third page.
		{name: "token expires mid-run", token: (*netboxemu.Server).V2Token,
			prepare: func(s *netboxemu.Server) { s.ExpireTokensAfter(6) }, wantErr: true, emitted: 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Seed, tc.opts.Devices = 5, devices
			s, base := startEmu(t, tc.opts)
			if tc.prepare != nil {
				tc.prepare(s)
			}
			token := tc.token(s)
			c, rec := newTestClient(t, base, token, func(src *bundle.Source) { src.PageSize = 50 })
			var got collector
			err := c.Fetch(t.Context(), got.emit)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if n := len(got.devices()); n != len(reportedIDs(t, s, "")) {
					t.Fatalf("emitted %d devices, want %d", n, len(reportedIDs(t, s, "")))
				}
				return
			}
			if !errors.Is(err, integration.ErrCredentials) {
				t.Fatalf("Fetch error %v does not wrap ErrCredentials", err)
			}
			if strings.Contains(err.Error(), strings.TrimSpace(strings.TrimPrefix(token, "Token "))) {
				t.Errorf("error repeats the token: %v", err)
			}
			want := 0
			for _, id := range reportedIDs(t, s, "") {
				if id <= tc.emitted {
					want++
				}
			}
			if n := len(got.devices()); n != want {
				t.Errorf("emitted %d devices, want the %d reported of the first %d", n, want, tc.emitted)
			}
			if f := rec.failureCounts(); f[httpretry.KindAuth] != 1 || len(f) != 1 {
				t.Errorf("failures %v, want one auth failure", f)
			}
			if st := s.Stats(); st.Forbidden != 1 {
				t.Errorf("emulator refused %d requests, want 1: a 403 is not retried", st.Forbidden)
			}
		})
	}
}

func TestOverlappingQueriesEmitEachDeviceOnce(t *testing.T) {
	s, base := startEmu(t, netboxemu.Options{Seed: 21, Devices: 2000})
	queries := []bundle.Query{
		{Label: "hq", Query: "site=hq"},
		{Label: "active", Query: "status=active"},
		{Label: "servers", Query: "role=server"},
		{Label: "hq again", Query: "site=hq&status=active"},
	}
	c, _ := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) {
		src.PageSize = 37
		src.Queries = queries
	})
	var got collector
	if err := c.Fetch(t.Context(), got.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	wantLabel := map[int]string{}
	for _, q := range queries {
		for _, id := range reportedIDs(t, s, q.Query) {
			if _, ok := wantLabel[id]; !ok {
				wantLabel[id] = q.Label
			}
		}
	}
	seen := map[int]bool{}
	for _, d := range got.devices() {
		id, _ := strconv.Atoi(d.Metadata[MetaDeviceID])
		if seen[id] {
			t.Fatalf("device %d emitted twice", id)
		}
		seen[id] = true
		if want, ok := wantLabel[id]; !ok || d.Metadata[integration.MetaQueryLabel] != want {
			t.Errorf("device %d labelled %q, want %q (selected: %v)", id, d.Metadata[integration.MetaQueryLabel], want, ok)
		}
	}
	if len(seen) != len(wantLabel) {
		t.Errorf("emitted %d devices, the queries select %d", len(seen), len(wantLabel))
	}
	if len(wantLabel) >= 2000 || len(wantLabel) <= 1000 {
		t.Fatalf("queries select %d of 2000 devices: not a useful overlap", len(wantLabel))
	}
}

func TestIDSet(t *testing.T) {
	var s idSet
	ids := []int64{1, 2, 63, 64, 65535, 65536, 1 << 40, 7}
	for _, id := range ids {
		if !s.add(id) {
			t.Fatalf("id %d reported as seen before", id)
		}
	}
	for _, id := range ids {
		if s.add(id) {
			t.Fatalf("id %d reported as new twice", id)
		}
	}
	if s.add(3) != true || s.add(65537) != true {
		t.Fatal("unseen ids reported as seen")
	}
}

func TestFollow(t *testing.T) {
	c, err := New(integration.Config{Source: bundle.Source{
		Endpoint:    "https://netbox.example.com/netbox/",
		Credentials: map[string]string{CredentialAPIToken: strings.Repeat("c", 40)},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const current = "https://netbox.example.com/netbox/api/dcim/devices/?limit=50"
	str := func(s string) *string { return &s }
	cases := []struct {
		name    string
		next    *string
		want    string
		wantErr bool
	}{
		{name: "null", next: nil, want: ""},
		{name: "empty", next: str(""), want: ""},
		{name: "absolute", next: str("https://netbox.example.com/netbox/api/dcim/devices/?limit=50&offset=50"),
			want: "https://netbox.example.com/netbox/api/dcim/devices/?limit=50&offset=50"},
		{name: "without the proxy's path prefix", next: str("https://netbox.example.com/api/dcim/devices/?limit=50&start=51"),
			want: "https://netbox.example.com/netbox/api/dcim/devices/?limit=50&start=51"},
		{name: "relative", next: str("/api/dcim/devices/?limit=50&offset=100"),
			want: "https://netbox.example.com/netbox/api/dcim/devices/?limit=50&offset=100"},
		{name: "behind a proxy that hides the scheme", next: str("http://netbox.example.com/netbox/api/dcim/devices/?limit=50&offset=50"),
			want: "https://netbox.example.com/netbox/api/dcim/devices/?limit=50&offset=50"},
		{name: "another host never gets the token", next: str("https://elsewhere.example.org:8443/api/dcim/devices/?offset=50&limit=50"),
			want: "https://netbox.example.com/netbox/api/dcim/devices/?offset=50&limit=50"},
		{name: "the same page again", next: str(current), wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.follow(devicesPath, current, tc.next)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("follow = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestRetryAfterAndDelay(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := &Client{MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, now: func() time.Time { return now }}
	cases := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"3", 3 * time.Second},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
		{"99999999999999999", time.Hour},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		if got := c.retryAfter(h); got != tc.want {
			t.Errorf("Retry-After %q = %v, want %v", tc.header, got, tc.want)
		}
	}
	for attempt := 1; attempt <= 12; attempt++ {
		ceiling := min(c.MinBackoff<<(attempt-1), c.MaxBackoff)
		for range 20 {
			d := c.delay(attempt, 0)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
			if d := c.delay(attempt, 4*time.Second); d < 4*time.Second || d > c.MaxBackoff {
				t.Fatalf("attempt %d: delay %v ignores Retry-After 4s", attempt, d)
			}
			if d := c.delay(attempt, time.Minute); d != time.Minute {
				t.Fatalf("attempt %d: delay %v, want the Retry-After of 1m beyond MaxBackoff %v", attempt, d, c.MaxBackoff)
			}
		}
	}
}

func TestFetchChangedAsksForWhatChangedSince(t *testing.T) {
	epoch := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	s, base := startEmu(t, netboxemu.Options{Seed: 4, Devices: 1200, Epoch: epoch})
	since := epoch.Add(-90 * 24 * time.Hour)
	cases := []struct {
		name, query, want string // want: the filter the emulator matches with
	}{
		{"all devices", "", "last_updated__gte=" + since.Format(time.RFC3339)},
		{"own filters kept", "status=active", "status=active&last_updated__gte=" + since.Format(time.RFC3339)},
		{"an earlier own bound gives way", "last_updated__gte=2020-01-01T00:00:00Z", "last_updated__gte=" + since.Format(time.RFC3339)},
		{"a later own bound is kept", "last_updated__gte=2026-05-01T00:00:00Z", "last_updated__gte=2026-05-01T00:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) {
				src.PageSize = 100
				src.Queries = []bundle.Query{{Label: "q", Query: tc.query}}
			})
			var got collector
			if err := c.FetchChanged(t.Context(), since, got.emit); err != nil {
				t.Fatalf("FetchChanged: %v", err)
			}
			want := reportedIDs(t, s, tc.want)
			if ids := got.ids(t); !slices.Equal(ids, want) || len(want) == 0 || len(want) >= 1200 {
				t.Fatalf("emitted %d devices, want the %d changed since %v (some, not all)", len(ids), len(want), since)
			}
		})
	}
}
