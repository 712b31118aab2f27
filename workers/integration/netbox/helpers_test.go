package netbox

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
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
// edit changes the source before New. Unless edit says otherwise, the
// source reports decommissioning devices (unavailable) rather than
// retracting them, so that every device a filter selects is emitted.
func newTestClient(t *testing.T, base, token string, edit func(*bundle.Source)) (*Client, *recorder) {
	t.Helper()
	src := bundle.Source{
		Type:                 IntegrationType,
		Endpoint:             base,
		Credentials:          map[string]string{CredentialAPIToken: token},
		Partition:            testPartition,
		IntegrationSourceUID: testSourceUID,
		NetBox:               &bundle.NetBox{StatusAvailability: map[string]string{"decommissioning": "Unavailable"}},
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

// reportedIDs are the ids of the devices filter selects, which a client of
// newTestClient reports.
func reportedIDs(t *testing.T, s *netboxemu.Server, filter string) []int {
	t.Helper()
	ids, err := s.MatchingDeviceIDs(filter)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// proxied serves the emulator behind a handler that may rewrite requests
// (before) and JSON answers (rewrite gets each list answer's results and
// the request path).
func proxied(t *testing.T, s *netboxemu.Server, before func(r *http.Request), rewrite func(path string, results []map[string]any)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if before != nil {
			before(r)
		}
		if rewrite == nil {
			s.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		body, _ := io.ReadAll(rec.Body)
		var page map[string]any
		if rec.Code == http.StatusOK && json.Unmarshal(body, &page) == nil {
			if list, ok := page["results"].([]any); ok {
				objs := make([]map[string]any, 0, len(list))
				for _, o := range list {
					if m, ok := o.(map[string]any); ok {
						objs = append(objs, m)
					}
				}
				rewrite(r.URL.Path, objs)
				body, _ = json.Marshal(page)
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// emuList reads a whole list from the emulator, as a test's oracle.
func emuList[T any](t *testing.T, s *netboxemu.Server, base, path, query string) []T {
	t.Helper()
	var out []T
	target := base + path + "?limit=1000&" + query
	for target != "" {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Token "+s.V1Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Next    *string `json:"next"`
			Results []T     `json:"results"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", target, resp.StatusCode, err)
		}
		out = append(out, page.Results...)
		target = ""
		if page.Next != nil {
			target = *page.Next
		}
	}
	return out
}
