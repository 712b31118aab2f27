package armis

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/pagesize"
	"github.com/serviceradar/sync-operator/workers/integration"
)

func TestNewValidatesConfig(t *testing.T) {
	valid := bundle.Source{
		Endpoint:    "https://tenant.armis.com",
		Credentials: map[string]string{CredentialSecretKey: "s3cret-value"},
		Queries:     []bundle.Query{{Label: "all", Query: "in:devices"}},
	}
	cases := []struct {
		name    string
		mutate  func(*bundle.Source)
		wantErr string // "" means valid
	}{
		{"valid", func(*bundle.Source) {}, ""},
		{"endpoint with /api/v1", func(s *bundle.Source) { s.Endpoint = "https://tenant.armis.com/api/v1/" }, ""},
		{"empty endpoint", func(s *bundle.Source) { s.Endpoint = "" }, "endpoint"},
		{"endpoint without scheme", func(s *bundle.Source) { s.Endpoint = "tenant.armis.com" }, "endpoint"},
		{"ftp endpoint", func(s *bundle.Source) { s.Endpoint = "ftp://tenant.armis.com" }, "endpoint"},
		{"endpoint without host", func(s *bundle.Source) { s.Endpoint = "https:///api" }, "endpoint"},
		{"endpoint with user info", func(s *bundle.Source) { s.Endpoint = "https://u:p@tenant.armis.com" }, "endpoint"},
		{"no credentials", func(s *bundle.Source) { s.Credentials = nil }, "credentials.secret_key"},
		{"blank secret key", func(s *bundle.Source) { s.Credentials = map[string]string{CredentialSecretKey: " "} }, "credentials.secret_key"},
		{"no queries", func(s *bundle.Source) { s.Queries = nil }, "queries"},
		{"empty query", func(s *bundle.Source) {
			s.Queries = append(s.Queries, bundle.Query{Label: "x", Query: "  "})
		}, "queries[1].query"},
		{"negative page size", func(s *bundle.Source) { s.PageSize = -1 }, "page_size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := valid
			src.Queries = append([]bundle.Query(nil), valid.Queries...)
			tc.mutate(&src)
			c, err := New(integration.Config{Source: src}, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.searchURL != "https://tenant.armis.com/api/v1/search/" || c.tokenURL != "https://tenant.armis.com/api/v1/access_token/" {
					t.Errorf("URLs %q, %q", c.searchURL, c.tokenURL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: %v, want an error naming %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("error %q carries the secret", err)
			}
		})
	}
}

func TestNewPageSize(t *testing.T) {
	cases := []struct {
		in   int32
		want int
	}{
		{0, int(pagesize.MustFor(pagesize.Armis).Default)}, {1, 1}, {250, 250},
		{pagesize.MustFor(pagesize.Armis).Max, int(pagesize.MustFor(pagesize.Armis).Max)},
		{pagesize.MustFor(pagesize.Armis).Max + 1, int(pagesize.MustFor(pagesize.Armis).Max)},
	}
	for _, tc := range cases {
		src := bundle.Source{Endpoint: "http://127.0.0.1:1", Credentials: map[string]string{CredentialSecretKey: "k"},
			Queries: []bundle.Query{{Query: "in:devices"}}, PageSize: tc.in}
		c, err := New(integration.Config{Source: src}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.pageSize != tc.want {
			t.Errorf("page size %d gives length %d, want %d", tc.in, c.pageSize, tc.want)
		}
		if c.queries[0].label != "query-0" {
			t.Errorf("unlabelled query labelled %q", c.queries[0].label)
		}
	}
}

func TestEndpointWithAPIPrefixFetches(t *testing.T) {
	srv := startEmu(t, armisemu.Options{Seed: 1, Devices: 120})
	src := testSource(srv, 50)
	src.Endpoint = srv.URL() + "/api/v1/"
	c := newTestClient(t, srv, src, nil)
	var col collector
	if err := c.Fetch(context.Background(), col.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	checkExactlyOnce(t, col.ids(t), seq(120))
}

func TestBackoffDelay(t *testing.T) {
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	b := Backoff{MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}
	cases := []struct {
		name       string
		failures   int
		retryAfter time.Duration
		jitter     func(int64) int64
		want       time.Duration
	}{
		{"first, low jitter", 1, 0, low, 50 * time.Millisecond},
		{"first, high jitter", 1, 0, high, 100 * time.Millisecond},
		{"third doubles twice", 3, 0, high, 400 * time.Millisecond},
		{"capped", 10, 0, high, 2 * time.Second},
		{"capped low", 40, 0, low, time.Second},
		{"retry-after wins", 1, 1500 * time.Millisecond, low, 1500 * time.Millisecond},
		{"longer retry-after honoured", 1, time.Minute, low, time.Minute},
		{"shorter retry-after", 3, 10 * time.Millisecond, high, 400 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.delay(tc.failures, tc.retryAfter, tc.jitter); got != tc.want {
				t.Errorf("delay = %v, want %v", got, tc.want)
			}
		})
	}
	if got := (Backoff{}).delay(40, 0, high); got != DefaultMaxBackoff {
		t.Errorf("default cap: %v, want %v", got, DefaultMaxBackoff)
	}
}

func TestRefreshAt(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	cases := []struct {
		name       string
		expiration string
		want       time.Duration // after now
	}{
		{"hour: a tenth ahead", now.Add(time.Hour).Format("2006-01-02T15:04:05.000000-07:00"), 54 * time.Minute},
		{"five minutes: 60s ahead", now.Add(5 * time.Minute).Format(time.RFC3339), 4 * time.Minute},
		{"one minute: half ahead", now.Add(time.Minute).Format(time.RFC3339), 30 * time.Second},
		{"no zone means UTC", now.Add(time.Hour).Format("2006-01-02T15:04:05.000000"), 54 * time.Minute},
		{"unparseable", "tomorrow", unknownLifetime - refreshMargin},
		{"in the past", now.Add(-time.Hour).Format(time.RFC3339), unknownLifetime - refreshMargin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := refreshAt(now, tc.expiration).Sub(now); got != tc.want {
				t.Errorf("refresh after %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDeviceMappingOfOddFields(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	c := &Client{partition: "p1", sourceUID: "uid"}
	cases := []struct {
		name     string
		raw      string
		ip, mac  string
		hostname string
		ts       string
		meta     map[string]string // keys that must hold these values ("" = absent)
	}{
		{
			name: "several addresses, commas and spaces",
			raw: `{"id":42,"ipAddress":"10.0.0.1, 10.0.0.2,10.0.0.3","macAddress":"aa:bb:cc:00:00:01 aa:bb:cc:00:00:02",
				"name":"host-42","lastSeen":"2026-01-02T03:04:05.123456+02:00","tags":["A","B"],"site":{"name":"HQ","location":"x"}}`,
			ip: "10.0.0.1", mac: "aa:bb:cc:00:00:01", hostname: "host-42", ts: "2026-01-02T01:04:05.123456Z",
			meta: map[string]string{
				MetaDeviceID: "42", integration.MetaAllIPs: "10.0.0.1,10.0.0.2,10.0.0.3",
				integration.MetaAllMACs: "aa:bb:cc:00:00:01,aa:bb:cc:00:00:02", "tags": "A,B", "site": "HQ",
				integration.MetaQueryLabel: "q", integration.MetaIntegrationType: "armis", integration.MetaIntegrationSourceUID: "uid",
			},
		},
		{
			name: "no addresses, string id, null fields",
			raw:  `{"id":"7","ipAddress":null,"macAddress":"","name":null,"lastSeen":null,"tags":[],"site":null,"riskLevel":3}`,
			ts:   now.Format(time.RFC3339Nano),
			meta: map[string]string{
				MetaDeviceID: "7", integration.MetaAllIPs: "", integration.MetaAllMACs: "", "tags": "", "site": "",
				"name": "", "risk_level": "3",
			},
		},
		{
			name: "IPv6 only",
			raw:  `{"id":9,"ipAddress":null,"ipv6":"2001:db8::9","macAddress":"aa:bb:cc:00:00:09"}`,
			ip:   "2001:db8::9", mac: "aa:bb:cc:00:00:09", ts: now.Format(time.RFC3339Nano),
			meta: map[string]string{integration.MetaAllIPs: "2001:db8::9", "ipv6": "2001:db8::9"},
		},
		{
			name: "IPv6 only, a global address before a link-local one",
			raw:  `{"id":10,"ipAddress":null,"ipv6":"fe80::1, 2001:db8:0:1::10","macAddress":""}`,
			ip:   "2001:db8:0:1::10", ts: now.Format(time.RFC3339Nano),
			meta: map[string]string{integration.MetaAllIPs: "2001:db8:0:1::10,fe80::1"},
		},
		{
			name: "site as a string, semicolons, escaped name",
			raw:  `{"id":8,"ipAddress":"192.0.2.1;192.0.2.9","name":"caf\u00e9","site":"Lab","manufacturer":"Acme","operatingSystem":"Linux"}`,
			ip:   "192.0.2.1", hostname: "café", ts: now.Format(time.RFC3339Nano),
			meta: map[string]string{integration.MetaAllIPs: "192.0.2.1,192.0.2.9", "site": "Lab", "vendor": "Acme", "os": "Linux", "name": "café"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d device
			if err := json.Unmarshal([]byte(tc.raw), &d); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			u := c.update(&d, "q", now)
			if u.IP != tc.ip || u.MAC != tc.mac || u.Hostname != tc.hostname || u.Timestamp != tc.ts {
				t.Errorf("ip %q mac %q hostname %q ts %q; want %q %q %q %q", u.IP, u.MAC, u.Hostname, u.Timestamp, tc.ip, tc.mac, tc.hostname, tc.ts)
			}
			if u.Source != "armis" || u.Partition != "p1" || u.IsAvailable == nil || !*u.IsAvailable {
				t.Errorf("source %q partition %q available %v", u.Source, u.Partition, u.IsAvailable)
			}
			for k, want := range tc.meta {
				got, ok := u.Metadata[k]
				if want == "" && ok {
					t.Errorf("metadata %s = %q, want absent", k, got)
				}
				if want != "" && got != want {
					t.Errorf("metadata %s = %q, want %q", k, got, want)
				}
			}
		})
	}
	var d device
	if err := json.Unmarshal([]byte(`{"id":"x1"}`), &d); err == nil {
		t.Error("a non-numeric id decoded")
	}
}

func TestIDSet(t *testing.T) {
	var s idSet
	for _, id := range []int64{1, 2, 63, 64, 1_000_000, bitsetLimit - 1, bitsetLimit, 1 << 40, -5, 0} {
		if !s.add(id) {
			t.Errorf("id %d reported seen on first add", id)
		}
		if s.add(id) {
			t.Errorf("id %d reported new on second add", id)
		}
	}
	if len(s.bits) > bitsetLimit/64 {
		t.Errorf("bitset grew to %d words", len(s.bits))
	}
	var dense idSet
	for id := int64(1); id <= 1_000_000; id++ {
		dense.add(id)
	}
	if bytes := len(dense.bits) * 8; bytes > 256<<10 || dense.other != nil {
		t.Errorf("1,000,000 dense ids take %d bytes of bitset (map %v), want at most 256 KiB", bytes, dense.other != nil)
	}
}
