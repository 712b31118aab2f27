package apifault

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestHost(t *testing.T) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello")
	})
	for _, tc := range []struct {
		scheme string
		tls    bool
	}{{"http", false}, {"https", true}} {
		t.Run(tc.scheme, func(t *testing.T) {
			h := NewHost("testemu", hello)
			defer h.Close()
			if h.URL() != "" || h.Client() != http.DefaultClient {
				t.Fatalf("before Start: URL %q, client %p; want empty and http.DefaultClient", h.URL(), h.Client())
			}
			base := h.Start()
			if tc.tls {
				h.Close() // a Host starts again after Close
				base = h.StartTLS()
			}
			if !strings.HasPrefix(base, tc.scheme+"://127.0.0.1:") || h.URL() != base {
				t.Fatalf("base %q, URL %q: want %s on the loopback", base, h.URL(), tc.scheme)
			}
			req, err := http.NewRequest(http.MethodGet, base, nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Do(h.Client(), req)
			if err != nil || rep.Status != http.StatusOK || string(rep.Body) != "hello" {
				t.Fatalf("GET %s: %v, %d %q", base, err, rep.Status, rep.Body)
			}
			h.Close()
			h.Close() // safe more than once
			if h.URL() != "" {
				t.Fatalf("URL %q after Close, want empty", h.URL())
			}
		})
	}
}

func TestHostStartTwicePanics(t *testing.T) {
	h := NewHost("testemu", http.NotFoundHandler())
	defer h.Close()
	h.Start()
	defer func() {
		if r := recover(); r != "testemu: server already started" {
			t.Fatalf("second Start panicked with %v", r)
		}
	}()
	h.StartTLS()
}
