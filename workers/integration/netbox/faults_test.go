package netbox

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/httpretry"
)

// waits records the delays a client asked for instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

func TestRateLimitHonoursRetryAfter(t *testing.T) {
	cases := []struct {
		name       string
		retryAfter time.Duration
		maxBackoff time.Duration
		want       time.Duration // least delay per retry
		most       time.Duration // longest delay per retry
	}{
		{name: "Retry-After honoured", retryAfter: 2 * time.Second, maxBackoff: 10 * time.Second, want: 2 * time.Second, most: 10 * time.Second},
		{name: "Retry-After longer than MaxBackoff honoured", retryAfter: time.Minute, maxBackoff: 10 * time.Second, want: time.Minute, most: time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, base := startEmu(t, netboxemu.Options{Seed: 1, Devices: 130})
			c, rec := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) { src.PageSize = 50 })
			c.MaxBackoff = tc.maxBackoff
			var w waits
			c.sleep = w.sleep
			s.RateLimitNext(3, tc.retryAfter)
			var got collector
			if err := c.Fetch(t.Context(), got.emit); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if n := len(got.devices()); n != 130 {
				t.Fatalf("emitted %d devices, want 130", n)
			}
			if f := rec.failureCounts(); f[httpretry.KindRateLimited] != 3 || len(f) != 1 {
				t.Errorf("failures %v, want 3 rate_limited", f)
			}
			if st := s.Stats(); st.RateLimited != 3 {
				t.Errorf("emulator throttled %d requests, want 3", st.RateLimited)
			}
			delays := w.all()
			if len(delays) != 3 {
				t.Fatalf("waited %d times, want 3", len(delays))
			}
			for _, d := range delays {
				if d < tc.want || d > tc.most {
					t.Errorf("waited %v, want at least %v and at most %v", d, tc.want, tc.most)
				}
			}
		})
	}
}

func TestServerErrorBursts(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		burst   int
		midRun  bool // the burst starts after the first page
		wantErr bool
	}{
		{name: "500 at the start", status: http.StatusInternalServerError, burst: 3},
		{name: "502 mid-run", status: http.StatusBadGateway, burst: 5, midRun: true},
		{name: "503 maintenance mid-run", status: http.StatusServiceUnavailable, burst: 4, midRun: true},
		{name: "504 at the start", status: http.StatusGatewayTimeout, burst: 1},
		{name: "503 longer than the attempts", status: http.StatusServiceUnavailable, burst: DefaultMaxAttempts, wantErr: true},
		{name: "500 longer than the attempts mid-run", status: http.StatusInternalServerError, burst: 50, midRun: true, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, base := startEmu(t, netboxemu.Options{Seed: 2, Devices: 260})
			c, rec := newTestClient(t, base, s.V2Token(), func(src *bundle.Source) { src.PageSize = 100 })
			got := collector{hook: func(_ context.Context, page int) error {
				if tc.midRun && page == 1 {
					s.FailNext(tc.burst, tc.status)
				}
				return nil
			}}
			if !tc.midRun {
				s.FailNext(tc.burst, tc.status)
			}
			err := c.Fetch(t.Context(), got.emit)
			wantFailures := tc.burst
			if tc.wantErr {
				wantFailures = DefaultMaxAttempts
				if err == nil {
					t.Fatal("Fetch succeeded past a burst longer than its attempts")
				}
				if !strings.Contains(err.Error(), "page 2") && tc.midRun {
					t.Errorf("error %q does not name page 2", err)
				}
				want := 0
				if tc.midRun {
					want = 100
				}
				if n := len(got.devices()); n != want {
					t.Errorf("emitted %d devices before the failure, want %d", n, want)
				}
			} else {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if n := len(got.devices()); n != 260 {
					t.Fatalf("emitted %d devices, want 260", n)
				}
			}
			if f := rec.failureCounts(); f[httpretry.KindServer] != wantFailures || len(f) != 1 {
				t.Errorf("failures %v, want %d server", f, wantFailures)
			}
		})
	}
}

func TestBrokenPageFailsTheRun(t *testing.T) {
	const pageSize = 50
	cases := []struct {
		name      string
		kind      netboxemu.Kind
		row       int
		fault     netboxemu.PageFault
		failure   string
		emitted   int
		errSubstr string
	}{
		{name: "device page answers 500", kind: netboxemu.KindDevices, row: 2 * pageSize, fault: netboxemu.PageServerError,
			failure: httpretry.KindServer, emitted: 2 * pageSize, errSubstr: "device page 3"},
		{name: "device page cut in half", kind: netboxemu.KindDevices, row: 3 * pageSize, fault: netboxemu.PageMalformed,
			failure: httpretry.KindDecode, emitted: 3 * pageSize, errSubstr: "device page 4"},
		{name: "first device page cut in half", kind: netboxemu.KindDevices, row: 0, fault: netboxemu.PageMalformed,
			failure: httpretry.KindDecode, emitted: 0, errSubstr: "device page 1"},
		{name: "interface lookup answers 500", kind: netboxemu.KindInterfaces, row: 0, fault: netboxemu.PageServerError,
			failure: httpretry.KindServer, emitted: 0, errSubstr: "interfaces and addresses of device page 1"},
		{name: "IP address lookup cut in half", kind: netboxemu.KindIPAddresses, row: 0, fault: netboxemu.PageMalformed,
			failure: httpretry.KindDecode, emitted: 0, errSubstr: "interfaces and addresses of device page 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, base := startEmu(t, netboxemu.Options{Seed: 4, Devices: 400})
			s.BreakPage(tc.kind, tc.row, tc.fault)
			c, rec := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) { src.PageSize = pageSize })
			var got collector
			err := c.Fetch(t.Context(), got.emit)
			if err == nil {
				t.Fatal("Fetch reported a full fetch past a broken page")
			}
			if errors.Is(err, integration.ErrCredentials) || !strings.Contains(err.Error(), tc.errSubstr) {
				t.Errorf("error %q, want one naming %q", err, tc.errSubstr)
			}
			if ids := got.ids(t); len(ids) != tc.emitted || (tc.emitted > 0 && ids[len(ids)-1] != tc.emitted) {
				t.Errorf("emitted %d devices before the failure, want ids 1..%d", len(ids), tc.emitted)
			}
			if f := rec.failureCounts(); f[tc.failure] != DefaultMaxAttempts || len(f) != 1 {
				t.Errorf("failures %v, want %d %s", f, DefaultMaxAttempts, tc.failure)
			}
		})
	}
}

func TestRefusedFilterIsNotRetried(t *testing.T) {
	s, base := startEmu(t, netboxemu.Options{Seed: 4, Devices: 10})
	c, rec := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) {
		src.Queries = []bundle.Query{{Label: "nowhere", Query: "site=nowhere"}}
	})
	var got collector
	err := c.Fetch(t.Context(), got.emit)
	if err == nil || !strings.Contains(err.Error(), "Select a valid choice") || !strings.Contains(err.Error(), `"nowhere"`) {
		t.Fatalf("Fetch error %v, want NetBox's refusal naming the query", err)
	}
	if st := s.Stats(); st.BadRequests != 1 {
		t.Errorf("asked %d times, want once", st.BadRequests)
	}
	if f := rec.failureCounts(); f[httpretry.KindServer] != 1 || len(f) != 1 {
		t.Errorf("failures %v", f)
	}
}

func TestNetworkErrors(t *testing.T) {
	t.Run("server gone before the run", func(t *testing.T) {
		s, base := startEmu(t, netboxemu.Options{Seed: 4, Devices: 10})
		s.Close()
		c, rec := newTestClient(t, base, s.V1Token(), nil)
		var got collector
		if err := c.Fetch(t.Context(), got.emit); err == nil {
			t.Fatal("Fetch succeeded without a server")
		}
		if f := rec.failureCounts(); f[httpretry.KindNetwork] != DefaultMaxAttempts || len(f) != 1 {
			t.Errorf("failures %v, want %d network", f, DefaultMaxAttempts)
		}
	})
	t.Run("server gone mid-run", func(t *testing.T) {
		s, base := startEmu(t, netboxemu.Options{Seed: 4, Devices: 300})
		c, rec := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) { src.PageSize = 100 })
		got := collector{hook: func(_ context.Context, page int) error {
			if page == 1 {
				s.Close()
			}
			return nil
		}}
		err := c.Fetch(t.Context(), got.emit)
		if err == nil || !strings.Contains(err.Error(), "device page 2") {
			t.Fatalf("Fetch error %v, want one naming device page 2", err)
		}
		if n := len(got.devices()); n != 100 {
			t.Errorf("emitted %d devices, want the first page's 100", n)
		}
		if f := rec.failureCounts(); f[httpretry.KindNetwork] != DefaultMaxAttempts {
			t.Errorf("failures %v, want %d network", f, DefaultMaxAttempts)
		}
	})
}

func TestCancellation(t *testing.T) {
	t.Run("between pages", func(t *testing.T) {
		s, base := startEmu(t, netboxemu.Options{Seed: 6, Devices: 500})
		c, _ := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) { src.PageSize = 50 })
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		got := collector{hook: func(_ context.Context, page int) error {
			if page == 2 {
				cancel()
			}
			return nil
		}}
		err := c.Fetch(ctx, got.emit)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch error %v, want context.Canceled", err)
		}
		if got.pageCount() != 2 || s.Stats().DevicePages != 2 {
			t.Errorf("emitted %d pages, fetched %d: want 2 and 2", got.pageCount(), s.Stats().DevicePages)
		}
	})
	t.Run("during a backoff", func(t *testing.T) {
		s, base := startEmu(t, netboxemu.Options{Seed: 6, Devices: 10})
		c, rec := newTestClient(t, base, s.V1Token(), nil)
		c.MinBackoff, c.MaxBackoff = time.Hour, time.Hour // only cancellation ends the wait
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec.onFailure = func(string) { cancel() }
		s.RateLimitNext(100, time.Hour)
		var got collector
		err := c.Fetch(ctx, got.emit)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch error %v, want context.Canceled", err)
		}
		if st := s.Stats(); st.RateLimited != 1 {
			t.Errorf("asked %d times, want once", st.RateLimited)
		}
	})
	t.Run("during a request", func(t *testing.T) {
		s, base := startEmu(t, netboxemu.Options{Seed: 6, Devices: 10})
		s.SetLatency(time.Hour) // only cancellation ends the request
		c, rec := newTestClient(t, base, s.V1Token(), nil)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() {
			for s.Stats().Requests == 0 {
				runtime.Gosched()
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		var got collector
		err := c.Fetch(ctx, got.emit)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch error %v, want context.Canceled", err)
		}
		if f := rec.failureCounts(); len(f) != 0 {
			t.Errorf("failures %v: a cancelled request is not a failure", f)
		}
	})
}

func TestEmitErrorStopsTheRun(t *testing.T) {
	s, base := startEmu(t, netboxemu.Options{Seed: 8, Devices: 500})
	c, _ := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) {
		src.PageSize = 50
		src.Queries = []bundle.Query{{Label: "a", Query: "status=active"}, {Label: "b", Query: "site=hq"}}
	})
	errFull := errors.New("queue closed")
	got := collector{hook: func(_ context.Context, page int) error {
		if page == 2 {
			return errFull
		}
		return nil
	}}
	err := c.Fetch(t.Context(), got.emit)
	if !errors.Is(err, errFull) || !strings.Contains(err.Error(), "page 2") {
		t.Fatalf("Fetch error %v, want emit's error on page 2", err)
	}
	if got.pageCount() != 2 || s.Stats().DevicePages != 2 {
		t.Errorf("emitted %d pages, fetched %d: want 2 and 2", got.pageCount(), s.Stats().DevicePages)
	}
}

func TestMemoryStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches a large inventory")
	}
	// 20,000 devices keep the test practical under -race on small machines;
	// what it checks does not depend on the size: after the first pages the
	// live heap stops growing, where keeping the devices would add about
	// 1.5 KiB for each.
	const devices, pageSize = 20_000, 500
	s, base := startEmu(t, netboxemu.Options{Seed: 10, Devices: devices})
	c, rec := newTestClient(t, base, s.V1Token(), func(src *bundle.Source) { src.PageSize = pageSize })
	liveHeap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var count, pages int
	var early, peak uint64
	emit := func(_ context.Context, page []results.DeviceUpdate) error {
		count += len(page)
		pages++
		if pages == 4 || pages%8 == 0 {
			heap := liveHeap()
			if pages == 4 {
				early = heap
			}
			peak = max(peak, heap)
		}
		return nil // discard
	}
	if err := c.Fetch(t.Context(), emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if count != devices || rec.pageCount() != devices/pageSize+1 { // and the empty VM list
		t.Fatalf("emitted %d devices over %d pages, want %d over %d", count, rec.pageCount(), devices, devices/pageSize+1)
	}
	t.Logf("live heap: %.1f MiB after 4 pages, peak %.1f MiB", float64(early)/(1<<20), float64(peak)/(1<<20))
	// Keeping the 18,000 devices of the later pages would add over 25 MiB.
	const growthBound = 8 << 20
	if peak > early+growthBound {
		t.Errorf("live heap grew from %.1f to %.1f MiB over the run", float64(early)/(1<<20), float64(peak)/(1<<20))
	}
	const bound = 64 << 20 // client and emulator together, generous
	if peak > bound {
		t.Errorf("live heap peaked at %d MiB, over %d MiB", peak>>20, bound>>20)
	}
}
