package netbox

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/hostile"
	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/pagesize"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// hostileFront serves emu over TLS behind intercept: a request for which
// intercept answers true never reaches the emulator. The client under test
// talks to the front only.
func hostileFront(t *testing.T, emu *netboxemu.Server, intercept func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	t.Helper()
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !intercept(w, r) {
			emu.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(front.Close)
	return front
}

// hostileClient is a client of the front with a page size of pageSize, two
// attempts per request and quick retries.
func hostileClient(t *testing.T, emu *netboxemu.Server, front *httptest.Server, pageSize int32) *Client {
	t.Helper()
	src := bundle.Source{
		Type:                 IntegrationType,
		Endpoint:             front.URL,
		Credentials:          map[string]string{CredentialAPIToken: emu.V1Token()},
		PageSize:             pageSize,
		Partition:            testPartition,
		IntegrationSourceUID: testSourceUID,
		NetBox:               &bundle.NetBox{StatusAvailability: map[string]string{"decommissioning": "Unavailable"}},
	}
	c, err := New(integration.Config{Source: src}, front.Client())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.MinBackoff, c.MaxBackoff, c.MaxAttempts = time.Millisecond, 5*time.Millisecond, 2
	return c
}

// TestRedirectsNeverCarryTheToken answers a device page or an interface lookup
// (both carrying the API token in their Authorization header) with a
// redirect to another server, over https or http, or to http on the same
// host and port, and checks that nothing reaches the other server (Go would
// send the token along to another port of the same host) and that the run
// fails naming the refused redirect, without retrying it.
func TestRedirectsNeverCarryTheToken(t *testing.T) {
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
	steps := []struct{ name, path string }{{"device page", netboxemu.DevicesPath}, {"interface lookup", netboxemu.InterfacesPath}}
	for _, step := range steps {
		for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
			for _, target := range targets {
				t.Run(fmt.Sprintf("%s %d to %s", step.name, status, target.name), func(t *testing.T) {
					emu := netboxemu.New(netboxemu.Options{Seed: 4, Devices: 20})
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
					var got collector
					err := c.Fetch(t.Context(), got.emit)
					for _, sink := range []*hostile.Sink{otherTLS, otherPlain} {
						for _, req := range sink.Requests() {
							t.Errorf("the other server received %s %s (Authorization %q)", req.Method, req.Path, req.Authorization)
						}
					}
					if n := redirects.Load(); n != 1 {
						t.Errorf("asked %d times, want once: a redirect is not retried", n)
					}
					if !errors.Is(err, integration.ErrRedirectRefused) || !strings.Contains(err.Error(), "redirect refused") {
						t.Fatalf("Fetch: %v, want the redirect refused", err)
					}
					if errors.Is(err, integration.ErrCredentials) {
						t.Errorf("Fetch: %v blames the credentials", err)
					}
					t.Logf("Fetch: %v", err)
				})
			}
		}
	}
}

// TestRedirectsWithinTheEndpointAreFollowed moves the device list to
// another path of the same server with 308: the token goes along and the
// run completes.
func TestRedirectsWithinTheEndpointAreFollowed(t *testing.T) {
	emu := netboxemu.New(netboxemu.Options{Seed: 4, Devices: 25})
	front := hostileFront(t, emu, func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case netboxemu.DevicesPath:
			w.Header().Set("Location", "/moved/devices/?"+r.URL.RawQuery)
			w.WriteHeader(http.StatusPermanentRedirect)
			return true
		case "/moved/devices/":
			r.URL.Path = netboxemu.DevicesPath
		}
		return false
	})
	c := hostileClient(t, emu, front, 10)
	var got collector
	if err := c.Fetch(t.Context(), got.emit); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if ids := got.ids(t); len(ids) != 25 {
		t.Errorf("emitted %d devices, want 25", len(ids))
	}
}

// hostileItems is how many items a hostile page streams.
const hostileItems = 20_000_000

// maxHeapGrowth bounds what fetching a hostile page may allocate in all.
const maxHeapGrowth = 200 << 20

// TestHostilePageIsRefusedInBoundedMemory answers a device page or a MAC
// lookup with 20 million items (up to some 260 MB), generated while they are
// sent, and checks that the client refuses the page as soon as an item is
// unusable or the page holds more than twice the page size asked for,
// emits nothing, and allocates little while doing so.
func TestHostilePageIsRefusedInBoundedMemory(t *testing.T) {
	const pageSize = 50
	cases := []struct {
		name    string
		path    string
		item    func([]byte, int) []byte
		wantErr string
		// tooLarge says the page is refused for its length (and not asked
		// for again); otherwise its first item is refused and it is retried.
		tooLarge bool
	}{
		{name: "device page of empty objects", path: netboxemu.DevicesPath, item: hostile.EmptyObject,
			wantErr: "item 0: device or virtual machine without a valid id"},
		{name: "device page of devices", path: netboxemu.DevicesPath, item: hostile.IDObject,
			wantErr: "more than 100 items", tooLarge: true},
		{name: "interface lookup of interfaces", path: netboxemu.InterfacesPath, item: hostile.IDObject,
			wantErr: fmt.Sprintf("more than %d items", 2*pagesize.MustFor(pagesize.NetBox).Max), tooLarge: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			emu := netboxemu.New(netboxemu.Options{Seed: 4, Devices: 20})
			var pages atomic.Int64
			front := hostileFront(t, emu, func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != tc.path {
					return false
				}
				pages.Add(1)
				hostile.StreamList(w, r, fmt.Sprintf(`{"count":%d,"next":null,"previous":null,"results":`, hostileItems),
					hostileItems, tc.item, `}`)
				return true
			})
			c := hostileClient(t, emu, front, pageSize)
			var got collector
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := c.Fetch(t.Context(), got.emit)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.Is(err, integration.ErrPageTooLarge) != tc.tooLarge {
				t.Fatalf("Fetch: %v, want the page refused with %q", err, tc.wantErr)
			}
			wantAsked := int64(c.MaxAttempts)
			if tc.tooLarge {
				wantAsked = 1
			}
			if n := pages.Load(); n != wantAsked {
				t.Errorf("asked for the page %d times, want %d", n, wantAsked)
			}
			if n := got.pageCount(); n != 0 {
				t.Errorf("emitted %d pages", n)
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("Fetch: %v; allocated %d KiB in all, heap grew by %d KiB", err, allocated>>10, grown>>10)
			if allocated > maxHeapGrowth || grown > maxHeapGrowth {
				t.Errorf("allocated %d MiB (heap grew by %d MiB) for a refused page, want under %d MiB",
					allocated>>20, grown>>20, maxHeapGrowth>>20)
			}
		})
	}
}

// TestErrorAnswersAreCappedAndClean answers device pages with error bodies
// a hostile or leaky server sends (a 1 MiB HTML debug page, HTML labelled
// as JSON, JSON details full of line breaks, escape sequences and markup,
// 1 MiB of them, and plain text with raw control bytes) and checks that the
// run's error keeps at most a short, clean line of them and nothing of the
// HTML pages.
func TestErrorAnswersAreCappedAndClean(t *testing.T) {
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string // what the error must still say
	}{
		{"500 with a 1 MiB HTML page", http.StatusInternalServerError, "text/html; charset=utf-8", hostile.HTMLPage(1 << 20), "server error 500"},
		{"502 with HTML labelled as JSON", http.StatusBadGateway, "application/json", hostile.HTMLPage(1 << 20), "server error 502"},
		{"503 with a dirty JSON detail", http.StatusServiceUnavailable, "application/json", hostile.DirtyJSON("detail", 50),
			"server error 503: upstream failed: [31m detail"},
		{"503 with a 1 MiB JSON detail", http.StatusServiceUnavailable, "application/json", hostile.DirtyJSON("detail", 1<<15),
			"server error 503: upstream failed: [31m detail"},
		{"400 with 1 MiB of text and control bytes", http.StatusBadRequest, "text/plain", hostile.DirtyText(1 << 20),
			"refused the request with 400: bad request: [31m detail"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			emu := netboxemu.New(netboxemu.Options{Seed: 4, Devices: 20})
			front := hostileFront(t, emu, func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != netboxemu.DevicesPath {
					return false
				}
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
				return true
			})
			c := hostileClient(t, emu, front, 10)
			var got collector
			err := c.Fetch(t.Context(), got.emit)
			if err == nil {
				t.Fatal("Fetch succeeded past an error answer")
			}
			hostile.CheckCleanError(t, err, tc.want)
			t.Logf("Fetch: %v", err)
		})
	}
}
