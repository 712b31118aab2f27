package apifault

import (
	"net/http"
	"net/http/httptest"
	"sync"
)

// Host serves an emulator's handler on a loopback port with httptest, over
// plain HTTP or HTTPS. All methods are safe for concurrent use.
type Host struct {
	name    string
	handler http.Handler

	mu sync.Mutex
	ts *httptest.Server
}

// NewHost returns a Host for handler, not yet serving. name is the
// emulator's package name; it prefixes the Host's panics.
func NewHost(name string, handler http.Handler) *Host {
	return &Host{name: name, handler: handler}
}

// Start serves the handler over plain HTTP on a loopback port and returns
// its base URL. It panics if the Host already serves.
func (h *Host) Start() string {
	return h.start(false)
}

// StartTLS is Start over HTTPS with httptest's self-signed certificate; use
// Client for an http.Client that trusts it.
func (h *Host) StartTLS() string {
	return h.start(true)
}

func (h *Host) start(tls bool) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ts != nil {
		panic(h.name + ": server already started")
	}
	h.ts = httptest.NewUnstartedServer(h.handler)
	if tls {
		h.ts.StartTLS()
	} else {
		h.ts.Start()
	}
	return h.ts.URL
}

// URL returns the base URL of the started server, or "" before Start.
func (h *Host) URL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ts == nil {
		return ""
	}
	return h.ts.URL
}

// Client returns an http.Client for the started server (trusting its
// certificate after StartTLS), or http.DefaultClient before Start.
func (h *Host) Client() *http.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ts == nil {
		return http.DefaultClient
	}
	return h.ts.Client()
}

// Close stops the started server and waits for its requests to finish. It is
// safe to call more than once, and before Start; after Close the Host can be
// started again.
func (h *Host) Close() {
	h.mu.Lock()
	ts := h.ts
	h.ts = nil
	h.mu.Unlock()
	if ts != nil {
		ts.Close()
	}
}
