package armis

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/test/hostile"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// hostileFront serves emu over TLS behind intercept: a request for which
// intercept answers true never reaches the emulator. The client under test
// talks to the front only.
func hostileFront(t *testing.T, emu *armisemu.Server, intercept func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	t.Helper()
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !intercept(w, r) {
			emu.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(front.Close)
	return front
}

// hostileClient is a client of the front with quick retries.
func hostileClient(t *testing.T, emu *armisemu.Server, front *httptest.Server, pageSize int32) *Client {
	t.Helper()
	src := testSource(emu, pageSize)
	src.Endpoint = front.URL
	c, err := New(integration.Config{Source: src}, front.Client())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.Backoff = Backoff{MinBackoff: fastBackoff.MinBackoff, MaxBackoff: fastBackoff.MaxBackoff, Attempts: 2}
	return c
}

// TestRedirectsNeverCarryTheSecretKeyOrToken answers the token exchange (a
// POST whose body holds the secret key) or a search page (whose
// Authorization header holds the access token) with a redirect to another
// server, over https or http, or to http on the same host and port, and
// checks that nothing reaches the other server and that the run fails
// naming the refused redirect, without retrying it.
func TestRedirectsNeverCarryTheSecretKeyOrToken(t *testing.T) {
	targets := []struct {
		name string
		// location is the base URL redirected to, given the front's
		// host:port and the other servers over https and http.
		location func(front string, otherTLS, otherPlain *hostile.Sink) string
	}{
		{"another port over https", func(_ string, other, _ *hostile.Sink) string { return other.URL }},
		{"another port over http", func(_ string, _, other *hostile.Sink) string { return other.URL }},
		{"http on the same host and port", func(front string, _, _ *hostile.Sink) string { return "http://" + front }},
	}
	steps := []struct{ name, path string }{{"token exchange", armisemu.TokenPath}, {"search page", armisemu.SearchPath}}
	for _, step := range steps {
		for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
			for _, target := range targets {
				t.Run(fmt.Sprintf("%s %d to %s", step.name, status, target.name), func(t *testing.T) {
					emu := startEmu(t, armisemu.Options{Seed: 1, Devices: 30})
					otherTLS, otherPlain := hostile.NewSink(t, true), hostile.NewSink(t, false)
					var redirects atomic.Int64
					var front *httptest.Server
					front = hostileFront(t, emu, func(w http.ResponseWriter, r *http.Request) bool {
						if r.URL.Path != step.path {
							return false
						}
						redirects.Add(1)
						w.Header().Set("Location", target.location(front.Listener.Addr().String(), otherTLS, otherPlain)+r.URL.RequestURI())
						w.WriteHeader(status)
						return true
					})
					c := hostileClient(t, emu, front, 10)
					var col collector
					err := c.Fetch(t.Context(), col.emit)
					for _, sink := range []*hostile.Sink{otherTLS, otherPlain} {
						for _, req := range sink.Requests() {
							t.Errorf("the other server received %s %s (Authorization %q, body %q)", req.Method, req.Path, req.Authorization, req.Body)
						}
					}
					if n := redirects.Load(); n != 1 {
						t.Errorf("asked %d times, want once: a redirect is not retried", n)
					}
					if !errors.Is(err, integration.ErrRedirectRefused) || !strings.Contains(err.Error(), "redirect refused") {
						t.Fatalf("Fetch: %v, want the redirect refused", err)
					}
					if errors.Is(err, integration.ErrCredentials) || strings.Contains(err.Error(), emu.SecretKey()) {
						t.Errorf("Fetch: %v blames the credentials or repeats the secret key", err)
					}
					t.Logf("Fetch: %v", err)
				})
			}
		}
	}
}

// TestRedirectsWithinTheEndpointAreFollowed moves the token exchange and
// the search to other paths of the same server with 308 and 307: the
// secret key and the token go along, and the run completes.
func TestRedirectsWithinTheEndpointAreFollowed(t *testing.T) {
	emu := startEmu(t, armisemu.Options{Seed: 1, Devices: 30})
	moved := map[string]string{"/moved-token": armisemu.TokenPath, "/moved-search": armisemu.SearchPath}
	front := hostileFront(t, emu, func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case armisemu.TokenPath:
			w.Header().Set("Location", "/moved-token")
			w.WriteHeader(http.StatusPermanentRedirect)
			return true
		case armisemu.SearchPath:
			w.Header().Set("Location", "/moved-search?"+r.URL.RawQuery)
			w.WriteHeader(http.StatusTemporaryRedirect)
			return true
		}
		if p, ok := moved[r.URL.Path]; ok {
			r.URL.Path = p
		}
		return false
	})
	c := hostileClient(t, emu, front, 10)
	var col collector
	if err := c.Fetch(t.Context(), col.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	checkExactlyOnce(t, col.ids(t), seq(30))
}

// hostileItems is how many items a hostile page streams.
const hostileItems = 20_000_000

// maxHeapGrowth bounds what fetching a hostile page may allocate in all.
const maxHeapGrowth = 200 << 20

// TestHostilePageIsRefusedInBoundedMemory answers a search page with
// 20 million items (some 60 MB, under the byte limit), generated while they
// are sent, and checks that the client refuses the page once it holds more
// than twice the page length, does not ask again, emits nothing, and
// allocates little while doing so.
func TestHostilePageIsRefusedInBoundedMemory(t *testing.T) {
	const pageSize = 100
	cases := []struct {
		name string
		item func([]byte, int) []byte
	}{
		{"empty objects", hostile.EmptyObject},
		{"devices with ids", hostile.IDObject},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			emu := startEmu(t, armisemu.Options{Seed: 1, Devices: 10})
			var pages atomic.Int64
			front := hostileFront(t, emu, func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != armisemu.SearchPath {
					return false
				}
				pages.Add(1)
				hostile.StreamList(w, r, fmt.Sprintf(`{"data":{"count":%d,"next":null,"total":%d,"results":`, hostileItems, hostileItems),
					hostileItems, tc.item, `},"success":true}`)
				return true
			})
			c := hostileClient(t, emu, front, pageSize)
			var col collector
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := c.Fetch(t.Context(), col.emit)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, integration.ErrPageTooLarge) || !strings.Contains(err.Error(), "more than 200 items") {
				t.Fatalf("Fetch: %v, want the page refused for holding more than 200 items", err)
			}
			if n := pages.Load(); n != 1 {
				t.Errorf("asked for the page %d times, want once", n)
			}
			if len(col.pages) != 0 {
				t.Errorf("emitted %d pages of a refused page", len(col.pages))
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("allocated %d KiB in all, heap grew by %d KiB", allocated>>10, grown>>10)
			if allocated > maxHeapGrowth || grown > maxHeapGrowth {
				t.Errorf("allocated %d MiB (heap grew by %d MiB) for a refused page, want under %d MiB",
					allocated>>20, grown>>20, maxHeapGrowth>>20)
			}
		})
	}
}

// TestErrorAnswersAreCappedAndClean answers search pages with error bodies
// a hostile or leaky server sends (a 1 MiB HTML debug page, HTML labelled
// as JSON, JSON messages full of line breaks, escape sequences and markup,
// 1 MiB of them, and plain text with raw control bytes) and checks that the
// run's error keeps at most a short, clean line of them and nothing of the
// HTML pages.
func TestErrorAnswersAreCappedAndClean(t *testing.T) {
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string // what the error must still say of the body
	}{
		{"500 with a 1 MiB HTML page", http.StatusInternalServerError, "text/html; charset=utf-8", hostile.HTMLPage(1 << 20), ""},
		{"502 with HTML labelled as JSON", http.StatusBadGateway, "application/json", hostile.HTMLPage(1 << 20), ""},
		{"503 with a dirty JSON message", http.StatusServiceUnavailable, "application/json", hostile.DirtyJSON("message", 50), "upstream failed: [31m detail"},
		{"503 with a 1 MiB JSON message", http.StatusServiceUnavailable, "application/json", hostile.DirtyJSON("message", 1<<15), "upstream failed: [31m detail"},
		{"400 with 1 MiB of text and control bytes", http.StatusBadRequest, "text/plain", hostile.DirtyText(1 << 20), "bad request: [31m detail"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			emu := startEmu(t, armisemu.Options{Seed: 1, Devices: 10})
			front := hostileFront(t, emu, func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != armisemu.SearchPath {
					return false
				}
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
				return true
			})
			c := hostileClient(t, emu, front, 10)
			var col collector
			err := c.Fetch(t.Context(), col.emit)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("status %d", tc.status)) {
				t.Fatalf("Fetch: %v, want a failure naming status %d", err, tc.status)
			}
			hostile.CheckCleanError(t, err, tc.want)
			t.Logf("Fetch: %v", err)
		})
	}
}
