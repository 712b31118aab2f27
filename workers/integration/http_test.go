package integration_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/serviceradar/sync-operator/test/hostile"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// TestRedirectsStayWithinTheOrigin sends a POST carrying a secret in its
// body and an Authorization header to a TLS server that redirects it, and
// checks that the shared policy follows only redirects within the origin.
func TestRedirectsStayWithinTheOrigin(t *testing.T) {
	const secret = "secret_key=s3cr3t-key-value"
	const token = "Token 0123456789abcdef"
	otherTLS := hostile.NewSink(t, true)
	otherPlain := hostile.NewSink(t, false)
	var front *httptest.Server
	var redirected sync.Map // path -> status and Location
	front = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/landed" {
			if string(body) != secret || r.Header.Get("Authorization") != token {
				http.Error(w, "credentials lost on a same-origin redirect", http.StatusBadRequest)
				return
			}
			_, _ = io.WriteString(w, "landed")
			return
		}
		if v, ok := redirected.Load(r.URL.Path); ok {
			rd := v.(redirect)
			w.Header().Set("Location", rd.location(front.Listener.Addr().String()))
			w.WriteHeader(rd.status)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(front.Close)
	frontHost := front.Listener.Addr().String()

	cases := []struct {
		name     string
		status   int
		location string // "{front}" is replaced with the front's host:port
		refused  bool
	}{
		{"307 to another port over https", http.StatusTemporaryRedirect, otherTLS.URL + "/steal", true},
		{"308 to another port over https", http.StatusPermanentRedirect, otherTLS.URL + "/steal", true},
		{"307 to another port over http", http.StatusTemporaryRedirect, otherPlain.URL + "/steal", true},
		{"308 to another port over http", http.StatusPermanentRedirect, otherPlain.URL + "/steal", true},
		{"302 to another port", http.StatusFound, otherTLS.URL + "/steal", true},
		{"307 to another host name", http.StatusTemporaryRedirect, "https://localhost:" + otherTLS.URL[strings.LastIndex(otherTLS.URL, ":")+1:] + "/steal", true},
		{"308 downgrade to http on the same host and port", http.StatusPermanentRedirect, "http://{front}/landed", true},
		{"307 within the origin", http.StatusTemporaryRedirect, "/landed", false},
		{"308 within the origin, absolute", http.StatusPermanentRedirect, "https://{front}/landed", false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/case/" + strings.Repeat("x", i+1)
			redirected.Store(path, redirect{status: tc.status, to: tc.location})
			hc := integration.HTTPClient(front.Client())
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, front.URL+path, strings.NewReader(secret))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", token)
			resp, err := hc.Do(req)
			if resp != nil {
				_ = resp.Body.Close()
			}
			for _, s := range []*hostile.Sink{otherTLS, otherPlain} {
				for _, got := range s.Requests() {
					t.Errorf("the other server received %s %s (Authorization %q, body %q)", got.Method, got.Path, got.Authorization, got.Body)
				}
			}
			if !tc.refused {
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("same-origin redirect: %v, status %v; want it followed with its credentials", err, resp)
				}
				return
			}
			if !errors.Is(err, integration.ErrRedirectRefused) {
				t.Fatalf("Do: %v, want a refused redirect", err)
			}
			rerr := integration.RedirectRefusal(err)
			if rerr == nil || rerr.Status != tc.status || rerr.From != "https://"+frontHost {
				t.Errorf("refusal %+v, want status %d from https://%s", rerr, tc.status, frontHost)
			}
			if !strings.Contains(rerr.Error(), "redirect refused") {
				t.Errorf("error %q does not name the refusal", rerr)
			}
		})
	}
}

// redirect is how the front answers one case's path.
type redirect struct {
	status int
	to     string
}

func (r redirect) location(front string) string {
	return strings.ReplaceAll(r.to, "{front}", front)
}

// TestRedirectLimit follows a same-origin redirect loop and checks that it
// ends after MaxRedirects.
func TestRedirectLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/again", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	resp, err := integration.HTTPClient(nil).Get(srv.URL + "/start")
	if resp != nil {
		_ = resp.Body.Close()
	}
	if !errors.Is(err, integration.ErrRedirectRefused) {
		t.Fatalf("Get: %v, want the loop refused", err)
	}
}

// TestHTTPClientKeepsTheCallersPolicy checks that HTTPClient copies the
// client (the caller's stays as it was) and runs the caller's own policy
// after the shared one.
func TestHTTPClientKeepsTheCallersPolicy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/next", http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "next")
	}))
	t.Cleanup(srv.Close)
	calls := 0
	own := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		calls++
		return http.ErrUseLastResponse
	}}
	hc := integration.HTTPClient(own)
	if hc == own {
		t.Fatal("HTTPClient returned the caller's client")
	}
	resp, err := hc.Get(srv.URL + "/start")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound || calls != 1 {
		t.Errorf("status %d after %d calls of the caller's policy, want 302 after 1", resp.StatusCode, calls)
	}
}

// TestCheckRedirectOrigins checks how origins compare: case-insensitive
// hosts, default ports, and scheme changes either way.
func TestCheckRedirectOrigins(t *testing.T) {
	cases := []struct {
		from, to string
		refused  bool
	}{
		{"https://armis.example/api/v1/access_token/", "https://ARMIS.example:443/api/v1/access_token", false},
		{"http://netbox.example/api/dcim/devices/", "http://netbox.example:80/api/dcim/devices/?limit=50", false},
		{"https://armis.example/a", "https://armis.example:8443/a", true},
		{"https://armis.example/a", "http://armis.example/a", true},
		{"http://netbox.example/a", "https://netbox.example/a", true},
		{"https://armis.example/a", "https://armis.example.evil/a", true},
		{"https://[::1]:8443/a", "https://[::1]:8443/b", false},
		{"https://[::1]:8443/a", "https://127.0.0.1:8443/b", true},
	}
	for _, tc := range cases {
		from, to := mustURL(t, tc.from), mustURL(t, tc.to)
		err := integration.CheckRedirect(&http.Request{URL: to}, []*http.Request{{URL: from}})
		if got := errors.Is(err, integration.ErrRedirectRefused); got != tc.refused {
			t.Errorf("%s -> %s: %v, want refused %v", tc.from, tc.to, err, tc.refused)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
