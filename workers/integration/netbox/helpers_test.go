package netbox

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/gateway/results"
	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/workers/integration"
)

const (
	testPartition = "site-a"
	testSourceUID = "0d9b6a7e-1c1e-4a36-9f5e-7f0f2a1b3c4d"
)

// startEmu serves a new emulator for the test and returns it with its URL.
func startEmu(t *testing.T, opts netboxemu.Options) (*netboxemu.Server, string) {
	t.Helper()
	s := netboxemu.New(opts)
	base := s.Start()
	t.Cleanup(s.Close)
	return s, base
}

// recorder is an Observer that remembers what it saw.
type recorder struct {
	mu        sync.Mutex
	pages     []int
	failures  map[string]int
	onFailure func(kind string)
}

func (r *recorder) Page(devices int, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		panic("negative page duration")
	}
	r.pages = append(r.pages, devices)
}

func (r *recorder) Failure(kind string) {
	r.mu.Lock()
	if r.failures == nil {
		r.failures = map[string]int{}
	}
	r.failures[kind]++
	hook := r.onFailure
	r.mu.Unlock()
	if hook != nil {
		hook(kind)
	}
}

func (r *recorder) pageCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pages)
}

func (r *recorder) failureCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.failures {
		out[k] = v
	}
	return out
}

// newTestClient builds a client of base with token and quick retries;
// edit changes the source before New.
func newTestClient(t *testing.T, base, token string, edit func(*bundle.Source)) (*Client, *recorder) {
	t.Helper()
	src := bundle.Source{
		Type:                 IntegrationType,
		Endpoint:             base,
		Credentials:          map[string]string{CredentialAPIToken: token},
		Partition:            testPartition,
		IntegrationSourceUID: testSourceUID,
	}
	if edit != nil {
		edit(&src)
	}
	rec := &recorder{}
	c, err := New(integration.Config{Source: src, Observer: rec}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.MinBackoff, c.MaxBackoff = time.Millisecond, 5*time.Millisecond
	return c, rec
}

// collector is an Emit that keeps every page.
type collector struct {
	mu    sync.Mutex
	pages [][]results.DeviceUpdate
	// hook runs after a page is kept, with its 1-based number; its error
	// is emit's.
	hook func(ctx context.Context, page int) error
}

func (c *collector) emit(ctx context.Context, page []results.DeviceUpdate) error {
	c.mu.Lock()
	c.pages = append(c.pages, slices.Clone(page))
	n := len(c.pages)
	c.mu.Unlock()
	if c.hook != nil {
		return c.hook(ctx, n)
	}
	return nil
}

// devices returns every update emitted, in order.
func (c *collector) devices() []results.DeviceUpdate {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []results.DeviceUpdate
	for _, p := range c.pages {
		out = append(out, p...)
	}
	return out
}

func (c *collector) pageCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pages)
}

// ids returns the netbox_device_id of every update emitted, in order.
func (c *collector) ids(t *testing.T) []int {
	t.Helper()
	devs := c.devices()
	out := make([]int, len(devs))
	for i, d := range devs {
		id, err := strconv.Atoi(d.Metadata[MetaDeviceID])
		if err != nil {
			t.Fatalf("device %d has netbox_device_id %q", i, d.Metadata[MetaDeviceID])
		}
		out[i] = id
	}
	return out
}

// seq returns from..to inclusive.
func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// withoutMACObjects serves the emulator behind a proxy that answers status
// for /api/dcim/mac-addresses/, as NetBox before 4.2 (404) or a token
// without the permission (403) does, and counts those answers.
func withoutMACObjects(t *testing.T, s *netboxemu.Server, status int) (string, *atomic.Int64) {
	t.Helper()
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == netboxemu.MACAddressesPath {
			refused.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"detail":"Not found."}`))
			return
		}
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &refused
}
