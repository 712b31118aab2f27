package armis

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/pagesize"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/httpretry"
)

func TestFetchFullPass(t *testing.T) {
	cases := []struct {
		devices  int
		pageSize int32
		wantLen  int // page length actually asked for
	}{
		{devices: 0, pageSize: 100, wantLen: 100},
		{devices: 1, pageSize: 100, wantLen: 100},
		{devices: 57, pageSize: 1, wantLen: 1},
		{devices: 250, pageSize: 100, wantLen: 100},
		{devices: 300, pageSize: 100, wantLen: 100},
		{devices: 1234, pageSize: 0, wantLen: int(pagesize.MustFor(pagesize.Armis).Default)},
		{devices: 5500, pageSize: 9000, wantLen: int(pagesize.MustFor(pagesize.Armis).Max)},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d devices page %d", tc.devices, tc.pageSize), func(t *testing.T) {
			srv := startEmu(t, armisemu.Options{Seed: 7, Devices: tc.devices})
			obs := newRecorder()
			c := newTestClient(t, srv, testSource(srv, tc.pageSize), obs)
			var col collector
			if err := c.Fetch(context.Background(), col.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			checkExactlyOnce(t, col.ids(t), seq(tc.devices))
			wantPages := max((tc.devices+tc.wantLen-1)/tc.wantLen, 1)
			st := srv.Stats()
			if st.SearchPages != int64(wantPages) || obs.pages != wantPages {
				t.Errorf("searched %d pages, observed %d, want %d", st.SearchPages, obs.pages, wantPages)
			}
			if obs.devices != tc.devices {
				t.Errorf("observer saw %d devices, want %d", obs.devices, tc.devices)
			}
			for i, n := range col.pages {
				if n > tc.wantLen || (i < len(col.pages)-1 && n != tc.wantLen) {
					t.Errorf("page %d has %d devices, want %d", i, n, tc.wantLen)
				}
			}
			if st.TokensIssued != 1 || st.Unauthorized != 0 || st.BadRequests != 0 {
				t.Errorf("stats %+v: want one token, no 401, no 400", st)
			}
		})
	}
}

func TestFetchMergesOverlappingQueries(t *testing.T) {
	srv := startEmu(t, armisemu.Options{Seed: 11, Devices: 3000})
	queries := []bundle.Query{
		{Label: "recent", Query: `in:devices timeFrame:"3 Days"`},
		{Label: "week", Query: `in:devices timeFrame:"7 Days"`},
		{Label: "corp", Query: `in:devices boundaries:"Corporate"`},
		{Label: "lab", Query: `in:devices boundaries:"Lab,Medical"`},
	}
	src := testSource(srv, 70)
	src.Queries = queries
	c := newTestClient(t, srv, src, nil)
	var col collector
	if err := c.Fetch(context.Background(), col.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}

	// The expected label of a device is that of the first query matching it.
	wantLabel := map[int]string{}
	sum := 0
	for _, q := range queries {
		ids, err := srv.MatchingIDs(q.Query)
		if err != nil {
			t.Fatal(err)
		}
		sum += len(ids)
		for _, id := range ids {
			if _, ok := wantLabel[id]; !ok {
				wantLabel[id] = q.Label
			}
		}
	}
	if sum <= len(wantLabel) {
		t.Fatalf("the queries do not overlap (%d matches, %d devices): the test proves nothing", sum, len(wantLabel))
	}
	want := make([]int, 0, len(wantLabel))
	for id := range wantLabel {
		want = append(want, id)
	}
	checkExactlyOnce(t, col.ids(t), want)
	for _, u := range col.updates {
		var id int
		_, _ = fmt.Sscan(u.Metadata[MetaDeviceID], &id)
		if got := u.Metadata[integration.MetaQueryLabel]; got != wantLabel[id] {
			t.Errorf("device %d labelled %q, want %q", id, got, wantLabel[id])
			break
		}
	}
}

func TestFetchTokenExpiryMidRunReauthenticatesOnce(t *testing.T) {
	srv := startEmu(t, armisemu.Options{Seed: 3, Devices: 1000})
	obs := newRecorder()
	c := newTestClient(t, srv, testSource(srv, 100), obs)
	srv.ExpireTokensAfter(4)
	var col collector
	if err := c.Fetch(context.Background(), col.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	checkExactlyOnce(t, col.ids(t), seq(1000))
	st := srv.Stats()
	if st.TokensIssued != 2 || st.Unauthorized != 1 || obs.failed(httpretry.KindAuth) != 1 {
		t.Errorf("tokens %d, 401s %d, auth failures %d: want one re-authentication after one 401",
			st.TokensIssued, st.Unauthorized, obs.failed(httpretry.KindAuth))
	}
}

func TestFetchRefreshesTokenAheadOfExpiry(t *testing.T) {
	clock := newStepClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	srv := startEmu(t, armisemu.Options{Seed: 3, Devices: 500, TokenTTL: time.Hour, Clock: clock.Now})
	src := testSource(srv, 100)
	c, err := New(integration.Config{Source: src, Now: clock.Now}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	c.Backoff = fastBackoff
	col := collector{onPage: func(n int) error {
		if n == 2 {
			// 55 of 60 minutes gone: within the last tenth, still valid.
			clock.Advance(55 * time.Minute)
		}
		return nil
	}}
	if err := c.Fetch(context.Background(), col.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	checkExactlyOnce(t, col.ids(t), seq(500))
	if st := srv.Stats(); st.TokensIssued != 2 || st.Unauthorized != 0 {
		t.Errorf("tokens %d, 401s %d: want a refresh ahead of expiry and no 401", st.TokensIssued, st.Unauthorized)
	}
}

func TestFetchCredentialsRefused(t *testing.T) {
	// Armis answers a wrong secret key with 400; proxies and older
	// deployments with 401 or 403. Each is a credentials error that stops the
	// whole pass at the first token exchange, not a failure of each query.
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(fmt.Sprintf("wrong secret key answered %d", status), func(t *testing.T) {
			srv := startEmu(t, armisemu.Options{Seed: 1, Devices: 10, BadSecretStatus: status})
			src := testSource(srv, 100)
			src.Queries = append(src.Queries, bundle.Query{Label: "servers", Query: "in:devices type:Servers"})
			const wrong = "not-the-secret-0123456789"
			src.Credentials = map[string]string{CredentialSecretKey: wrong}
			obs := newRecorder()
			c := newTestClient(t, srv, src, obs)
			var col collector
			err := c.Fetch(context.Background(), col.emit)
			if !errors.Is(err, integration.ErrCredentials) {
				t.Fatalf("Fetch: %v, want ErrCredentials", err)
			}
			if strings.Contains(err.Error(), wrong) {
				t.Errorf("error %q carries the secret key", err)
			}
			if st := srv.Stats(); st.TokensRefused != 1 || st.SearchPages != 0 || len(col.pages) != 0 {
				t.Errorf("refused %d, pages %d, emitted %d: want one refusal and nothing fetched", st.TokensRefused, st.SearchPages, len(col.pages))
			}
			if obs.failed(httpretry.KindAuth) != 1 {
				t.Errorf("auth failures %d, want 1", obs.failed(httpretry.KindAuth))
			}
		})
	}
	t.Run("token refused again after re-authentication", func(t *testing.T) {
		// The emulator's clock jumps two hours at every reading, so every
		// token is expired by the time it is used: only the search refuses.
		clock := newStepClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
		srv := startEmu(t, armisemu.Options{Seed: 1, Devices: 10, Clock: func() time.Time {
			clock.Advance(2 * time.Hour)
			return clock.Now()
		}})
		c := newTestClient(t, srv, testSource(srv, 100), nil)
		var col collector
		err := c.Fetch(context.Background(), col.emit)
		if !errors.Is(err, integration.ErrCredentials) {
			t.Fatalf("Fetch: %v, want ErrCredentials", err)
		}
		if st := srv.Stats(); st.TokensIssued != 2 || st.Unauthorized != 2 || len(col.pages) != 0 {
			t.Errorf("tokens %d, 401s %d, emitted %d: want exactly one re-authentication", st.TokensIssued, st.Unauthorized, len(col.pages))
		}
	})
}

func TestFetchRateLimitedHonoursRetryAfter(t *testing.T) {
	srv := startEmu(t, armisemu.Options{Seed: 5, Devices: 450})
	obs := newRecorder()
	c := newTestClient(t, srv, testSource(srv, 100), obs)
	c.Backoff = Backoff{} // defaults: the waits are recorded, not slept
	var mu sync.Mutex
	var waits []time.Duration
	c.sleep = func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return nil
	}
	// The first three requests (the token exchange and two searches of the
	// first page) are throttled.
	srv.RateLimitNext(3, 2*time.Second)
	var col collector
	if err := c.Fetch(context.Background(), col.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	checkExactlyOnce(t, col.ids(t), seq(450))
	if st := srv.Stats(); st.RateLimited != 3 || obs.failed(httpretry.KindRateLimited) != 3 {
		t.Errorf("429s served %d, observed %d: want 3", st.RateLimited, obs.failed(httpretry.KindRateLimited))
	}
	if len(waits) != 3 {
		t.Fatalf("waited %d times, want 3", len(waits))
	}
	for _, w := range waits {
		if w < 2*time.Second || w > DefaultMaxBackoff {
			t.Errorf("waited %v, want at least the Retry-After of 2s and at most %v", w, DefaultMaxBackoff)
		}
	}
	for i, n := range col.pages[:len(col.pages)-1] {
		if n != 100 {
			t.Errorf("page %d has %d devices: 429s must not shrink pages", i, n)
		}
	}
}

func TestFetchRecoversFromServerErrorBursts(t *testing.T) {
	cases := []struct {
		status, burst int
	}{
		{http.StatusInternalServerError, 1},
		{http.StatusBadGateway, 3},
		{http.StatusServiceUnavailable, 5},
		{http.StatusGatewayTimeout, 2},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d x%d", tc.status, tc.burst), func(t *testing.T) {
			srv := startEmu(t, armisemu.Options{Seed: 9, Devices: 640})
			obs := newRecorder()
			c := newTestClient(t, srv, testSource(srv, 100), obs)
			var col collector
			col.onPage = func(n int) error {
				if n == 2 {
					srv.FailNext(tc.burst, tc.status)
				}
				return nil
			}
			if err := c.Fetch(context.Background(), col.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			checkExactlyOnce(t, col.ids(t), seq(640))
			if st := srv.Stats(); st.ServerErrors != int64(tc.burst) || obs.failed(httpretry.KindServer) != tc.burst {
				t.Errorf("5xx served %d, observed %d: want %d", st.ServerErrors, obs.failed(httpretry.KindServer), tc.burst)
			}
		})
	}
}

func TestFetchFailingPage(t *testing.T) {
	cases := []struct {
		name  string
		fault armisemu.PageFault
		kind  string
	}{
		{"server error", armisemu.PageServerError, httpretry.KindServer},
		{"malformed", armisemu.PageMalformed, httpretry.KindDecode},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEmu(t, armisemu.Options{Seed: 2, Devices: 1000})
			src := testSource(srv, 100)
			// A second query whose matches fit before the broken offset still
			// runs after the first query fails.
			src.Queries = append(src.Queries, bundle.Query{Label: "day", Query: `in:devices timeFrame:"1 Days"`})
			obs := newRecorder()
			c := newTestClient(t, srv, src, obs)
			srv.BreakPage(300, tc.fault)
			var col collector
			err := c.Fetch(context.Background(), col.emit)
			if err == nil {
				t.Fatal("Fetch succeeded over a broken page: that would be a full fetch")
			}
			if errors.Is(err, integration.ErrCredentials) || !strings.Contains(err.Error(), "from 300") || !strings.Contains(err.Error(), `"all"`) {
				t.Errorf("error %q should name the query and the page, not credentials", err)
			}
			day, merr := srv.MatchingIDs(`in:devices timeFrame:"1 Days"`)
			if merr != nil {
				t.Fatal(merr)
			}
			if len(day) == 0 || len(day) >= 300 {
				t.Fatalf("%d devices seen in a day: the second query must fit before offset 300", len(day))
			}
			want := seq(300)
			for _, id := range day {
				if id > 300 {
					want = append(want, id)
				}
			}
			checkExactlyOnce(t, col.ids(t), want)
			if got := obs.failed(tc.kind); got != DefaultAttempts {
				t.Errorf("%s failures %d, want %d attempts", tc.kind, got, DefaultAttempts)
			}
		})
	}
	t.Run("refused query fails at once", func(t *testing.T) {
		srv := startEmu(t, armisemu.Options{Seed: 2, Devices: 10})
		src := testSource(srv, 100)
		src.Queries = []bundle.Query{{Label: "bad", Query: "in:nothing"}}
		c := newTestClient(t, srv, src, nil)
		var col collector
		err := c.Fetch(context.Background(), col.emit)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Fatalf("Fetch: %v, want the 400", err)
		}
		if st := srv.Stats(); st.BadRequests != 1 {
			t.Errorf("bad requests %d: a refused query is not retried", st.BadRequests)
		}
	})
}

func TestFetchShrinksPagesAfterRepeatedFailures(t *testing.T) {
	cases := []struct {
		name        string
		pageSize    int32
		backoff     Backoff
		fail        int  // failures injected before the second page
		rateLimited bool // as 429s rather than 500s
		wantLen     int  // length of the pages after the second
	}{
		{"below the threshold", 100, Backoff{}, 2, false, 100},
		{"at the threshold", 100, Backoff{}, 3, false, 50},
		{"twice", 100, Backoff{Attempts: 10, ShrinkAfter: 2}, 4, false, 25},
		{"not below the minimum", 20, Backoff{Attempts: 10, ShrinkAfter: 1}, 5, false, MinPageSize},
		{"429s do not shrink", 100, Backoff{}, 5, true, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const devices = 400
			srv := startEmu(t, armisemu.Options{Seed: 4, Devices: devices})
			c := newTestClient(t, srv, testSource(srv, tc.pageSize), nil)
			c.Backoff = tc.backoff
			c.Backoff.MinBackoff, c.Backoff.MaxBackoff = fastBackoff.MinBackoff, fastBackoff.MaxBackoff
			var col collector
			col.onPage = func(n int) error {
				if n == 1 {
					if tc.rateLimited {
						srv.RateLimitNext(tc.fail, 0)
					} else {
						srv.FailNext(tc.fail, http.StatusInternalServerError)
					}
				}
				return nil
			}
			if err := c.Fetch(context.Background(), col.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			checkExactlyOnce(t, col.ids(t), seq(devices))
			if col.pages[0] != int(tc.pageSize) {
				t.Errorf("first page has %d devices, want %d", col.pages[0], tc.pageSize)
			}
			rest := col.pages[1:]
			for i, n := range rest[:len(rest)-1] {
				if n != tc.wantLen {
					t.Fatalf("pages after the failures %v: page %d has %d devices, want %d", rest, i+1, n, tc.wantLen)
				}
			}
		})
	}
}

func TestFetchCancellation(t *testing.T) {
	cases := []struct {
		name string
		// arm makes the run block after the first page; ready is closed
		// once it blocks.
		arm func(srv *armisemu.Server, c *Client, obs *recorder, ready chan<- struct{})
	}{
		{"request in flight", func(srv *armisemu.Server, _ *Client, _ *recorder, ready chan<- struct{}) {
			before := srv.Stats().Requests
			srv.SetLatency(time.Hour)
			go func() {
				for srv.Stats().Requests == before {
					runtime.Gosched()
				}
				close(ready)
			}()
		}},
		{"waiting to retry", func(srv *armisemu.Server, c *Client, obs *recorder, ready chan<- struct{}) {
			var once sync.Once
			obs.mu.Lock()
			obs.onFail = func(string) { once.Do(func() { close(ready) }) }
			obs.mu.Unlock()
			srv.FailNext(1000, http.StatusServiceUnavailable)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEmu(t, armisemu.Options{Seed: 6, Devices: 1000})
			obs := newRecorder()
			c := newTestClient(t, srv, testSource(srv, 100), obs)
			c.Backoff = Backoff{MinBackoff: time.Hour, MaxBackoff: time.Hour}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan struct{})
			col := collector{onPage: func(n int) error {
				if n == 1 {
					tc.arm(srv, c, obs, ready)
				}
				return nil
			}}
			done := make(chan error, 1)
			go func() { done <- c.Fetch(ctx, col.emit) }()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("Fetch returned before it blocked: %v", err)
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Fetch: %v, want context.Canceled", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Fetch did not return after cancellation")
			}
			if len(col.pages) != 1 {
				t.Errorf("emitted %d pages, want 1", len(col.pages))
			}
			srv.ClearFaults()
		})
	}
}

func TestFetchEmitErrorStopsTheRun(t *testing.T) {
	srv := startEmu(t, armisemu.Options{Seed: 8, Devices: 1000})
	src := testSource(srv, 100)
	src.Queries = append(src.Queries, bundle.Query{Label: "again", Query: `in:devices boundaries:"Lab"`})
	c := newTestClient(t, srv, src, nil)
	boom := errors.New("downstream closed")
	col := collector{onPage: func(n int) error {
		if n == 2 {
			return boom
		}
		return nil
	}}
	err := c.Fetch(context.Background(), col.emit)
	if !errors.Is(err, boom) {
		t.Fatalf("Fetch: %v, want the emit error", err)
	}
	if st := srv.Stats(); st.SearchPages != 2 || len(col.pages) != 2 {
		t.Errorf("searched %d pages, emitted %d: want the run to stop at the second", st.SearchPages, len(col.pages))
	}
}

func TestFetchMapsDevices(t *testing.T) {
	const devices = 3000
	srv := startEmu(t, armisemu.Options{Seed: 12, Devices: devices})
	c := newTestClient(t, srv, testSource(srv, 500), nil)
	var col collector
	if err := c.Fetch(context.Background(), col.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(col.updates) != devices {
		t.Fatalf("emitted %d devices, want %d", len(col.updates), devices)
	}
	var multiIP, multiMAC, noIP, noMAC int
	for _, u := range col.updates {
		var id int
		if _, err := fmt.Sscan(u.Metadata[MetaDeviceID], &id); err != nil {
			t.Fatalf("update %+v has no device id", u)
		}
		d, ok := srv.Device(id)
		if !ok {
			t.Fatalf("device %d unknown to the emulator", id)
		}
		want := expectedUpdate(t, d)
		if diff := compareUpdates(u, want); diff != "" {
			t.Fatalf("device %d: %s", id, diff)
		}
		ips := strings.Split(want.Metadata[integration.MetaAllIPs], ",")
		macs := strings.Split(want.Metadata[integration.MetaAllMACs], ",")
		switch {
		case want.IP == "":
			noIP++
		case len(ips) > 1:
			multiIP++
		}
		switch {
		case want.MAC == "":
			noMAC++
		case len(macs) > 1:
			multiMAC++
		}
	}
	if multiIP == 0 || multiMAC == 0 || noIP == 0 || noMAC == 0 {
		t.Errorf("inventory lacks a case: %d multi-IP, %d multi-MAC, %d without IP, %d without MAC", multiIP, multiMAC, noIP, noMAC)
	}
}

// expectedUpdate is what the emulator's device should map to, computed
// independently from the emulator's own representation.
func expectedUpdate(t *testing.T, d armisemu.Device) results.DeviceUpdate {
	t.Helper()
	split := func(s string) []string {
		var out []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	seen, err := time.Parse(time.RFC3339Nano, d.LastSeen)
	if err != nil {
		t.Fatalf("emulator lastSeen %q: %v", d.LastSeen, err)
	}
	meta := map[string]string{
		MetaDeviceID:                         fmt.Sprint(d.ID),
		integration.MetaIntegrationType:      "armis",
		integration.MetaIntegrationSourceUID: "uid-armis-1",
		integration.MetaQueryLabel:           "all",
		"vendor":                             d.Manufacturer,
		"model":                              d.Model,
		"os":                                 d.OperatingSystem,
		"os_version":                         d.OperatingSystemVersion,
		"type":                               d.Type,
		"category":                           d.Category,
		"site":                               d.Site.Name,
		"boundaries":                         d.Boundaries,
		"risk_level":                         fmt.Sprint(d.RiskLevel),
	}
	meta["name"] = d.Name
	for k, v := range meta {
		if v == "" {
			delete(meta, k)
		}
	}
	if len(d.Tags) > 0 {
		meta["tags"] = strings.Join(d.Tags, ",")
	}
	if d.IPv6 != nil {
		meta["ipv6"] = *d.IPv6
	}
	u := results.DeviceUpdate{Hostname: d.Name, Source: "armis", Partition: "edge", Timestamp: seen.UTC().Format(time.RFC3339Nano), Metadata: meta}
	if d.IPAddress != nil {
		ips := split(*d.IPAddress)
		u.IP, u.DeviceID = ips[0], "edge:"+ips[0]
		meta[integration.MetaAllIPs] = strings.Join(ips, ",")
	} else if d.IPv6 != nil {
		// The emulator lists the global address first.
		v6 := split(*d.IPv6)
		u.IP, u.DeviceID = v6[0], "edge:"+v6[0]
		meta[integration.MetaAllIPs] = strings.Join(v6, ",")
	}
	if d.MacAddress == nil {
		d.MacAddress = new(string)
	}
	if macs := split(*d.MacAddress); len(macs) > 0 {
		u.MAC = macs[0]
		meta[integration.MetaAllMACs] = strings.Join(macs, ",")
	}
	return u
}

// compareUpdates describes how got differs from want, or returns "".
func compareUpdates(got, want results.DeviceUpdate) string {
	if got.IsAvailable == nil || !*got.IsAvailable {
		return "is_available is not true"
	}
	g, w := got, want
	g.IsAvailable, w.IsAvailable, g.Metadata, w.Metadata = nil, nil, nil, nil
	if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
		return fmt.Sprintf("got %+v, want %+v", g, w)
	}
	keys := func(m map[string]string) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(keys(got.Metadata), keys(want.Metadata)) {
		return fmt.Sprintf("metadata keys %v, want %v", keys(got.Metadata), keys(want.Metadata))
	}
	for k, v := range want.Metadata {
		if got.Metadata[k] != v {
			return fmt.Sprintf("metadata %s = %q, want %q", k, got.Metadata[k], v)
		}
	}
	return ""
}

func TestFetchMemoryStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches 200,000 devices")
	}
	const devices = 200_000
	const bound = 64 << 20
	srv := startEmu(t, armisemu.Options{Seed: 21, Devices: devices})
	c := newTestClient(t, srv, testSource(srv, 2000), nil)
	// Without the fields parameter the emulator skips its (slow) field
	// trimming and every device arrives whole: bigger pages than the client
	// normally asks for, so the bound holds a fortiori.
	c.searchField = ""
	var count, pages int
	var peak uint64
	var ms runtime.MemStats
	emit := func(_ context.Context, page []results.DeviceUpdate) error {
		count += len(page)
		pages++
		if pages%10 == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		return nil
	}
	if err := c.Fetch(context.Background(), emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if count != devices {
		t.Fatalf("emitted %d devices, want %d", count, devices)
	}
	if peak == 0 || peak > bound {
		t.Fatalf("heap in use peaked at %d MiB, want under %d MiB", peak>>20, bound>>20)
	}
	t.Logf("heap in use peaked at %.1f MiB over %d pages", float64(peak)/(1<<20), pages)
}

func TestFetchChangedAsksForWhatChangedSince(t *testing.T) {
	srv := startEmu(t, armisemu.Options{Seed: 12, Devices: 2000})
	since := armisemu.DefaultEpoch().Add(-5 * 24 * time.Hour)
	src := testSource(srv, 100)
	src.Queries = []bundle.Query{{Label: "all", Query: "in:devices"}, {Label: "lab", Query: `in:devices boundaries:"Lab"`}}
	c := newTestClient(t, srv, src, nil)
	var col collector
	if err := c.FetchChanged(context.Background(), since, col.emit); err != nil {
		t.Fatalf("FetchChanged: %v", err)
	}
	want, err := srv.MatchingIDs("in:devices after:" + since.Format("2006-01-02T15:04:05"))
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || len(want) >= 2000 {
		t.Fatalf("%d devices seen after %v: the inventory does not exercise the filter", len(want), since)
	}
	checkExactlyOnce(t, col.ids(t), want)
}

// TestFetchMarksStaleDevicesUnavailable runs a pass ten days after the
// emulator's inventory was observed (lastSeen spread over the 30 days before
// it): with a staleness of 20 days, devices last seen more than 20 days
// before the pass go out unavailable, the others available, and all of them
// go out (staleness is not retraction); with staleness off, all are available.
func TestFetchMarksStaleDevicesUnavailable(t *testing.T) {
	const n = 1500
	now := armisemu.DefaultEpoch().Add(10 * 24 * time.Hour)
	for _, tc := range []struct {
		name       string
		staleAfter time.Duration
	}{
		{"20 days", 20 * 24 * time.Hour},
		{"off", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEmu(t, armisemu.Options{Seed: 21, Devices: n})
			src := testSource(srv, 500)
			src.StaleAfterSec = int64(tc.staleAfter / time.Second)
			c, err := New(integration.Config{Source: src, Now: func() time.Time { return now }}, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			var col collector
			if err := c.Fetch(context.Background(), col.emit); err != nil {
				t.Fatal(err)
			}
			if len(col.updates) != n {
				t.Fatalf("%d updates, want %d: stale devices must still be reported", len(col.updates), n)
			}
			stale := 0
			for _, u := range col.updates {
				var id int
				if _, err := fmt.Sscan(u.Metadata[MetaDeviceID], &id); err != nil {
					t.Fatalf("update %+v has no device id", u)
				}
				d, _ := srv.Device(id)
				seen, err := time.Parse(time.RFC3339Nano, d.LastSeen)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.staleAfter == 0 || now.Sub(seen) <= tc.staleAfter
				if u.IsAvailable == nil || *u.IsAvailable != want {
					t.Fatalf("device %d last seen %s: available %v, want %v", id, d.LastSeen, u.IsAvailable, want)
				}
				if !want {
					stale++
				}
			}
			if tc.staleAfter > 0 && (stale == 0 || stale == n) {
				t.Fatalf("%d of %d devices stale: the inventory should hold both", stale, n)
			}
		})
	}
}
