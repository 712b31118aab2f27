package armis

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// startEmu serves an emulator for the test and closes it at cleanup.
func startEmu(t testing.TB, opts armisemu.Options) *armisemu.Server {
	t.Helper()
	srv := armisemu.New(opts)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// testSource is a source of one query over the whole inventory of srv.
func testSource(srv *armisemu.Server, pageSize int32) bundle.Source {
	return bundle.Source{
		Type:                 "armis",
		Endpoint:             srv.URL(),
		Credentials:          map[string]string{CredentialSecretKey: srv.SecretKey()},
		Queries:              []bundle.Query{{Label: "all", Query: "in:devices"}},
		PageSize:             pageSize,
		Partition:            "edge",
		IntegrationSourceUID: "uid-armis-1",
	}
}

// fastBackoff keeps retries quick: tests assert what is retried, not when.
var fastBackoff = Backoff{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}

// newTestClient builds a client for src with fast backoff and obs.
func newTestClient(t testing.TB, srv *armisemu.Server, src bundle.Source, obs integration.Observer) *Client {
	t.Helper()
	c, err := New(integration.Config{Source: src, Observer: obs}, srv.Client())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.Backoff = fastBackoff
	return c
}

// recorder observes a run: the pages it was given and the failures.
type recorder struct {
	mu       sync.Mutex
	pages    int
	devices  int
	failures map[string]int
	onFail   func(kind string)
}

func newRecorder() *recorder { return &recorder{failures: map[string]int{}} }

func (r *recorder) Page(devices int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pages++
	r.devices += devices
}

func (r *recorder) Failure(kind string) {
	r.mu.Lock()
	r.failures[kind]++
	f := r.onFail
	r.mu.Unlock()
	if f != nil {
		f(kind)
	}
}

func (r *recorder) failed(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures[kind]
}

// collector gathers what a run emits.
type collector struct {
	mu      sync.Mutex
	pages   []int // device count of every emitted page
	updates []results.DeviceUpdate
	// onPage, when set, runs after page n (1-based) is recorded; its error
	// is emit's.
	onPage func(n int) error
}

func (c *collector) emit(_ context.Context, page []results.DeviceUpdate) error {
	c.mu.Lock()
	c.pages = append(c.pages, len(page))
	c.updates = append(c.updates, page...)
	n := len(c.pages)
	f := c.onPage
	c.mu.Unlock()
	if f != nil {
		return f(n)
	}
	return nil
}

// ids counts how often each armis_device_id was emitted.
func (c *collector) ids(t testing.TB) map[int]int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int]int, len(c.updates))
	for _, u := range c.updates {
		id, err := strconv.Atoi(u.Metadata[MetaDeviceID])
		if err != nil {
			t.Fatalf("update without a numeric %s: %+v", MetaDeviceID, u)
		}
		out[id]++
	}
	return out
}

// checkExactlyOnce fails unless ids holds every id of want exactly once and
// nothing else.
func checkExactlyOnce(t testing.TB, ids map[int]int, want []int) {
	t.Helper()
	if len(ids) != len(want) {
		t.Errorf("emitted %d distinct devices, want %d", len(ids), len(want))
	}
	for _, id := range want {
		if n := ids[id]; n != 1 {
			t.Errorf("device %d emitted %d times, want once", id, n)
			return
		}
	}
}

// seq is 1..n.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// stepClock is a clock that moves only when told to.
type stepClock struct{ ns atomic.Int64 }

func newStepClock(start time.Time) *stepClock {
	c := &stepClock{}
	c.ns.Store(start.UnixNano())
	return c
}

func (c *stepClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *stepClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
