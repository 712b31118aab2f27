package runner_test

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/test/segmentsink"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/armis"
	"github.com/serviceradar/sync-operator/workers/runner"
)

// searches records the AQL of every Armis search a runner makes.
type searches struct {
	mu   sync.Mutex
	aqls []string
}

func (s *searches) RoundTrip(r *http.Request) (*http.Response, error) {
	if aql := r.URL.Query().Get("aql"); aql != "" {
		s.mu.Lock()
		s.aqls = append(s.aqls, aql)
		s.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r) //nolint:wrapcheck // a transport
}

func (s *searches) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.aqls)
}

type harness struct {
	emu      *armisemu.Server
	sink     *segmentsink.Sink
	runner   *runner.Runner
	searches *searches
	reg      *prometheus.Registry
}

// start runs a runner against an Armis emulator and a segment sink. Retries
// of the Armis client are quick: these tests are about runs, not backoff.
func start(t *testing.T, emu armisemu.Options, runTimeout time.Duration) *harness {
	t.Helper()
	h := &harness{emu: armisemu.New(emu), searches: &searches{}, reg: prometheus.NewRegistry()}
	h.emu.Start()
	t.Cleanup(h.emu.Close)
	sink, client := segmentsink.Start(t, &segmentsink.Sink{})
	h.sink = sink
	h.runner = runner.New(runner.Options{Gateway: client, AgentID: "w", RunTimeout: runTimeout, Log: testr.New(t), SegmentDevices: 50,
		HTTP: &http.Client{Transport: h.searches}, Metrics: runner.NewMetrics(h.reg),
		NewClient: func(cfg integration.Config, hc *http.Client) (integration.Client, error) {
			c, err := armis.New(cfg, hc)
			if err == nil {
				c.Backoff = armis.Backoff{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Attempts: 2}
			}
			return c, err //nolint:wrapcheck // the constructor names the field
		}})
	t.Cleanup(h.runner.Stop)
	return h
}

// source is an Armis source of the emulator, polled every second.
func (h *harness) source(uid string, pageSize int32, discovery time.Duration) bundle.Source {
	return bundle.Source{Type: armis.IntegrationType, Endpoint: h.emu.URL(), Credentials: map[string]string{armis.CredentialSecretKey: h.emu.SecretKey()},
		Queries: []bundle.Query{{Label: "all", Query: "in:devices"}}, PageSize: pageSize, Partition: "default",
		PollIntervalSec: 1, DiscoveryIntervalSec: int64(discovery / time.Second), IntegrationSourceUID: uid, SyncServiceID: "ss"}
}

func (h *harness) apply(sources map[string]bundle.Source) {
	h.runner.Apply(context.Background(), bundle.Sync{AgentID: "w", Sources: sources})
}

// completed waits for n completed runs of a source and returns them.
func (h *harness) completed(t *testing.T, uid string, n int) []segmentsink.Run {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var done []segmentsink.Run
		for _, r := range h.sink.Runs(uid) {
			if _, ok := r.Complete(); ok {
				done = append(done, r)
			}
		}
		if len(done) >= n {
			return done[:n]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d completed runs of %s, want %d", len(done), uid, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ids are the Armis device ids a run delivered, sorted.
func ids(t *testing.T, r segmentsink.Run) []int {
	t.Helper()
	var out []int
	for _, s := range r.Segments {
		for _, d := range s.Devices {
			id, err := strconv.Atoi(d.Metadata[armis.MetaDeviceID])
			if err != nil {
				t.Fatalf("device without an armis id: %+v", d)
			}
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func TestFullPassesAndChangesBetweenThem(t *testing.T) {
	// lastSeen values lie in the 30 days before the epoch: with the epoch
	// half a day ahead, some devices are "seen" after every instant of the test.
	h := start(t, armisemu.Options{Seed: 5, Devices: 1500, Epoch: time.Now().Add(12 * time.Hour)}, time.Minute)
	// Polls every second, a full pass every 10 s: a margin for a first full
	// pass slowed down by a busy machine (it took 5 s with tests running in
	// parallel, which made the second run a full pass too).
	h.apply(map[string]bundle.Source{"ns/a": h.source("uid-a", 500, 10*time.Second)})
	runs := h.completed(t, "uid-a", 13)
	h.runner.Stop()

	all := make([]int, 1500)
	for i := range all {
		all[i] = i + 1
	}
	full := func(r segmentsink.Run) bool { m, _ := r.Complete(); return m.FullFetch }
	if m, _ := runs[0].Complete(); !m.FullFetch || m.Error != "" || !slices.Equal(ids(t, runs[0]), all) {
		t.Fatalf("first run: full_fetch %v, error %q, %d devices; want a full pass of all 1500", m.FullFetch, m.Error, runs[0].Devices())
	}
	if full(runs[1]) {
		t.Fatal("the second run, within the discovery interval, was a full pass")
	}
	if !slices.ContainsFunc(runs[2:], full) {
		t.Fatal("no full pass again after the discovery interval")
	}
	// Every run between full passes asked for what changed since the last
	// good pass, and delivered exactly the devices Armis answers to that.
	var changed []string
	for _, aql := range h.searches.all() {
		if strings.Contains(aql, " after:") {
			changed = append(changed, aql)
		}
	}
	i := 0
	for _, r := range runs {
		if full(r) {
			continue
		}
		if m, _ := r.Complete(); m.Error != "" {
			t.Fatalf("a run over the changes failed: %s", m.Error)
		}
		if i >= len(changed) {
			t.Fatalf("runs over the changes %d, AQL searches with after: %v", i+1, changed)
		}
		want, err := h.emu.MatchingIDs(changed[i])
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(t, r); !slices.Equal(got, want) || len(got) == 0 || len(got) == len(all) {
			t.Errorf("run over %q delivered %d devices, want the %d matching (some, not all)", changed[i], len(got), len(want))
		}
		i++
	}
	if o := h.sink.Overlaps(); len(o) > 0 {
		t.Errorf("runs of one source overlapped: %v", o)
	}
}

func TestFailingPageMeansNoFullFetch(t *testing.T) {
	h := start(t, armisemu.Options{Seed: 6, Devices: 2000}, time.Minute)
	h.emu.BreakPage(500, armisemu.PageServerError)
	h.apply(map[string]bundle.Source{"ns/a": h.source("uid-a", 100, time.Hour)})
	first := h.completed(t, "uid-a", 1)[0]
	h.emu.RepairPage(500)
	m, _ := first.Complete()
	if m.FullFetch || m.Error == "" || first.Devices() != 500 {
		t.Fatalf("run with a failing page: full_fetch %v, error %q, %d devices; want no full fetch, its error, the 500 before it",
			m.FullFetch, m.Error, first.Devices())
	}
	// A failed pass is no discovery: the next run is a full pass again.
	next := h.completed(t, "uid-a", 2)[1]
	if m, _ := next.Complete(); !m.FullFetch || next.Devices() != 2000 {
		t.Fatalf("run after the repair: full_fetch %v, %d devices; want a full pass of 2000", m.FullFetch, next.Devices())
	}
	if n := h.metric(t, "sync_errors_total", "kind", "run"); n < 1 {
		t.Errorf("sync_errors_total{kind=run} = %v, want the failed run counted", n)
	}
}

func TestTimedOutRunIsReported(t *testing.T) {
	// 300 pages of 50 ms each cannot finish in 2 s; the first segments can.
	h := start(t, armisemu.Options{Seed: 7, Devices: 3000}, 2*time.Second)
	h.emu.SetLatency(50 * time.Millisecond)
	h.apply(map[string]bundle.Source{"ns/a": h.source("uid-a", 10, time.Hour)})
	r := h.completed(t, "uid-a", 1)[0]
	m, _ := r.Complete()
	if m.FullFetch || !strings.Contains(m.Error, "timed out after 2s") || r.Devices() == 0 || r.Devices() >= 3000 {
		t.Fatalf("timed-out run: full_fetch %v, error %q, %d devices; want its error, no full fetch, the devices sent before", m.FullFetch, m.Error, r.Devices())
	}
	if n := h.metric(t, "sync_errors_total", "kind", "timeout"); n < 1 {
		t.Errorf("sync_errors_total{kind=timeout} = %v, want the timeout counted", n)
	}
}

func TestNetworkBlacklist(t *testing.T) {
	h := start(t, armisemu.Options{Seed: 8, Devices: 600}, time.Minute)
	src := h.source("uid-a", 200, time.Hour)
	src.NetworkBlacklist = []string{"172.16.0.0/24", "10.0.0.0/8", "not a cidr"}
	h.apply(map[string]bundle.Source{"ns/a": src})
	r := h.completed(t, "uid-a", 1)[0]
	blocked := []netip.Prefix{netip.MustParsePrefix("172.16.0.0/24"), netip.MustParsePrefix("10.0.0.0/8")}
	in := func(ip string) bool {
		a, err := netip.ParseAddr(strings.TrimSpace(ip))
		return err == nil && slices.ContainsFunc(blocked, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	var want []int
	stripped := 0
	for id := 1; id <= 600; id++ {
		d, _ := h.emu.Device(id)
		var ips []string
		if d.IPAddress != nil {
			ips = strings.Split(*d.IPAddress, ",")
		}
		if len(ips) > 0 && in(ips[0]) {
			continue
		}
		want = append(want, id)
		if slices.ContainsFunc(ips, in) {
			stripped++
		}
	}
	if len(want) == 600 || stripped == 0 {
		t.Fatalf("the inventory does not exercise the blacklist: %d devices kept, %d with extra blacklisted IPs", len(want), stripped)
	}
	if got := ids(t, r); !slices.Equal(got, want) {
		t.Fatalf("delivered %d devices, want the %d whose primary IP is not blacklisted", len(got), len(want))
	}
	for _, s := range r.Segments {
		for _, d := range s.Devices {
			if in(d.IP) || slices.ContainsFunc(strings.Split(d.Metadata[integration.MetaAllIPs], ","), in) {
				t.Fatalf("a blacklisted address went out: ip %s, all_ips %q", d.IP, d.Metadata[integration.MetaAllIPs])
			}
		}
	}
}

func TestApplyStartsRestartsAndStopsLoops(t *testing.T) {
	h := start(t, armisemu.Options{Seed: 9, Devices: 300}, time.Minute)
	a, b := h.source("uid-a", 100, time.Hour), h.source("uid-b", 100, time.Hour)
	active := func() float64 { return h.metric(t, "sync_sources_active", "", "") }

	h.apply(map[string]bundle.Source{"ns/a": a})
	h.completed(t, "uid-a", 1)
	h.apply(map[string]bundle.Source{"ns/a": a, "ns/b": b})
	h.completed(t, "uid-b", 1)
	if n := active(); n != 2 {
		t.Fatalf("sync_sources_active %v with two sources, want 2", n)
	}
	// a changes (another query), b is paused: a's runs follow the new
	// query, b's stop.
	a.Queries = []bundle.Query{{Label: "lab", Query: `in:devices boundaries:"Lab"`}}
	b.Paused = true
	before := len(h.sink.Runs("uid-a"))
	h.apply(map[string]bundle.Source{"ns/a": a, "ns/b": b})
	time.Sleep(300 * time.Millisecond) // as below: a call read whole before the pause may still land
	bRuns := len(h.sink.Runs("uid-b"))
	if n := active(); n != 1 {
		t.Fatalf("sync_sources_active %v after pausing one of two, want 1", n)
	}
	lab, err := h.emu.MatchingIDs(`in:devices boundaries:"Lab"`)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	// The restarted loop's first run is a full pass of the new query.
	for followed := false; !followed; {
		for _, r := range h.sink.Runs("uid-a")[before:] {
			_, done := r.Complete()
			followed = followed || (done && slices.Equal(ids(t, r), lab))
		}
		if !followed && time.Now().After(deadline) {
			t.Fatalf("a's runs never followed its new query (want its %d devices)", len(lab))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, n := h.series(t, "sync_last_run_devices", "source", "ns/b"); n != 0 {
		t.Errorf("%d series of the paused source remain", n)
	}
	// A source its client refuses is reported as a failed run at once.
	bad := h.source("uid-bad", 100, time.Hour)
	bad.Credentials = nil
	h.apply(map[string]bundle.Source{"ns/a": a, "ns/b": b, "ns/bad": bad})
	if m, _ := h.completed(t, "uid-bad", 1)[0].Complete(); m.FullFetch || !strings.Contains(m.Error, "source not runnable") {
		t.Fatalf("unrunnable source reported %+v, want a failed run naming why", m)
	}
	// A new bundle that leaves it as it was does not report it again.
	a.PageSize = 50
	h.apply(map[string]bundle.Source{"ns/a": a, "ns/b": b, "ns/bad": bad})
	time.Sleep(300 * time.Millisecond)
	if n := len(h.sink.Runs("uid-bad")); n != 1 {
		t.Fatalf("the unchanged unrunnable source was reported %d times, want once", n)
	}
	// Removing every source stops every loop; nothing runs after.
	h.apply(map[string]bundle.Source{})
	time.Sleep(300 * time.Millisecond) // a call the sink had read whole before the stop may still land
	aRuns := len(h.sink.Runs("uid-a"))
	time.Sleep(2500 * time.Millisecond) // over two poll intervals
	if _, n := h.series(t, "sync_last_run_devices", "", ""); n != 0 {
		t.Errorf("%d series of removed sources remain", n)
	}
	if n := active(); n != 0 || len(h.sink.Runs("uid-a")) != aRuns || len(h.sink.Runs("uid-b")) != bRuns {
		t.Fatalf("after removal: %v active, runs of a %d → %d, of b %d → %d", n, aRuns, len(h.sink.Runs("uid-a")), bRuns, len(h.sink.Runs("uid-b")))
	}
}

// metric sums the series of a counter or gauge whose label has the value
// (every series when label is empty).
func (h *harness) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	sum, _ := h.series(t, name, label, value)
	return sum
}

// series sums and counts the series of a metric whose label has the value.
func (h *harness) series(t *testing.T, name, label, value string) (float64, int) {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, n := 0.0, 0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				n++
			}
		}
	}
	return sum, n
}
