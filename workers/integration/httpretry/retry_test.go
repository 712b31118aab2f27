package httpretry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/httpretry"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 12 ", 12 * time.Second},
		{"0", 0},
		{"-4", 0},
		{"soon", 0},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999999999", httpretry.MaxRetryAfter},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), httpretry.MaxRetryAfter},
	}
	for _, tc := range cases {
		if got := httpretry.RetryAfter(tc.header, now); got != tc.want {
			t.Errorf("RetryAfter(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

func TestForStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		status     int
		retryAfter string
		want       httpretry.Class
	}{
		{http.StatusUnauthorized, "", httpretry.Class{Kind: httpretry.KindAuth}},
		{http.StatusForbidden, "5", httpretry.Class{Kind: httpretry.KindAuth}},
		{http.StatusTooManyRequests, "", httpretry.Class{Kind: httpretry.KindRateLimited, Retry: true}},
		{http.StatusTooManyRequests, "7", httpretry.Class{Kind: httpretry.KindRateLimited, Retry: true, RetryAfter: 7 * time.Second}},
		{http.StatusRequestTimeout, "", httpretry.Class{Kind: httpretry.KindServer, Retry: true}},
		{http.StatusInternalServerError, "", httpretry.Class{Kind: httpretry.KindServer, Retry: true}},
		{http.StatusServiceUnavailable, "30", httpretry.Class{Kind: httpretry.KindServer, Retry: true, RetryAfter: 30 * time.Second}},
		{http.StatusBadRequest, "5", httpretry.Class{Kind: httpretry.KindServer}},
		{http.StatusNotFound, "", httpretry.Class{Kind: httpretry.KindServer}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %q", tc.status, tc.retryAfter), func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}}
			if tc.retryAfter != "" {
				resp.Header.Set("Retry-After", tc.retryAfter)
			}
			if got := httpretry.ForStatus(resp, now); got != tc.want {
				t.Errorf("ForStatus = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestForTransportAndDecode(t *testing.T) {
	redirect := &url.Error{Op: "Get", URL: "https://a.example/x", Err: &integration.RedirectError{Status: 302, From: "https://a.example:443", To: "https://b.example:443"}}
	cases := []struct {
		name string
		got  httpretry.Class
		want httpretry.Class
	}{
		{"refused redirect", httpretry.ForTransport(redirect), httpretry.Class{Kind: httpretry.KindServer}},
		{"connection refused", httpretry.ForTransport(errors.New("dial tcp: connection refused")), httpretry.Class{Kind: httpretry.KindNetwork, Retry: true}},
		{"body read failed", httpretry.ForDecode(errors.New("unexpected EOF"), true), httpretry.Class{Kind: httpretry.KindNetwork, Retry: true}},
		{"page too large", httpretry.ForDecode(fmt.Errorf("results: %w", integration.ErrPageTooLarge), false), httpretry.Class{Kind: httpretry.KindDecode}},
		{"malformed", httpretry.ForDecode(errors.New("invalid character"), false), httpretry.Class{Kind: httpretry.KindDecode, Retry: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("class %+v, want %+v", tc.got, tc.want)
			}
		})
	}
}

func TestDelay(t *testing.T) {
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	b := httpretry.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	cases := []struct {
		name       string
		b          httpretry.Backoff
		failures   int
		retryAfter time.Duration
		jitter     func(int64) int64
		want       time.Duration
	}{
		{"first, low jitter", b, 1, 0, low, 50 * time.Millisecond},
		{"first, high jitter", b, 1, 0, high, 100 * time.Millisecond},
		{"third doubles twice", b, 3, 0, high, 400 * time.Millisecond},
		{"capped", b, 10, 0, high, 2 * time.Second},
		{"capped low", b, 40, 0, low, time.Second},
		{"retry-after wins", b, 1, 1500 * time.Millisecond, low, 1500 * time.Millisecond},
		{"longer retry-after honoured", b, 1, time.Minute, low, time.Minute},
		{"shorter retry-after", b, 3, 10 * time.Millisecond, high, 400 * time.Millisecond},
		{"defaults", httpretry.Backoff{}, 1, 0, high, httpretry.DefaultMinBackoff},
		{"defaults capped", httpretry.Backoff{}, 40, 0, high, httpretry.DefaultMaxBackoff},
		{"max below min", httpretry.Backoff{Min: time.Second, Max: time.Millisecond}, 5, 0, high, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.Delay(tc.failures, tc.retryAfter, tc.jitter); got != tc.want {
				t.Errorf("Delay = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRetrier checks that a Retrier allows Attempts failures in all and
// waits the backoff's delay after each but the last.
func TestRetrier(t *testing.T) {
	var waits []time.Duration
	r := httpretry.Retrier{
		Backoff: httpretry.Backoff{Min: time.Second, Max: 4 * time.Second, Attempts: 4},
		Sleep:   func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil },
		Jitter:  func(n int64) int64 { return n - 1 },
	}
	for r.Failed() {
		if err := r.Wait(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	if r.Failures() != 4 {
		t.Errorf("%d failures counted, want 4", r.Failures())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&httpretry.Retrier{}).Wait(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on an ended context: %v", err)
	}
}
