package armisemu

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
)

// statuses sends k searches and returns their statuses.
func statuses(t *testing.T, c *apiClient, tok string, k int) []int {
	t.Helper()
	out := make([]int, k)
	for i := range out {
		rep, err := c.search(context.Background(), tok, "in:devices", 0, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = rep.status
	}
	return out
}

func TestRateLimitNext(t *testing.T) {
	s, c := start(t, Options{Devices: 50})
	tok := c.token(t)
	s.RateLimitNext(2, 1500*time.Millisecond)
	rep, err := c.search(context.Background(), tok, "in:devices", 0, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.status != http.StatusTooManyRequests || rep.header.Get("Retry-After") != "2" {
		t.Fatalf("status %d Retry-After %q, want 429 and 2", rep.status, rep.header.Get("Retry-After"))
	}
	var body errorBody
	if err := json.Unmarshal(rep.body, &body); err != nil || body.Success {
		t.Fatalf("429 body %s is not an Armis error", rep.body)
	}
	got := statuses(t, c, tok, 2)
	if got[0] != http.StatusTooManyRequests || got[1] != http.StatusOK {
		t.Fatalf("statuses %v, want [429 200]", got)
	}
	if st := s.Stats(); st.RateLimited != 2 || st.SearchPages != 1 {
		t.Fatalf("stats %+v, want 2 rate limited and 1 page", st)
	}
}

func TestFailNext(t *testing.T) {
	for _, status := range []int{500, 502, 503} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			s, c := start(t, Options{Devices: 50})
			tok := c.token(t)
			s.FailNext(3, status)
			got := statuses(t, c, tok, 4)
			want := []int{status, status, status, http.StatusOK}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("statuses %v, want %v", got, want)
				}
			}
			if st := s.Stats(); st.ServerErrors != 3 {
				t.Fatalf("stats %+v, want 3 server errors", st)
			}
		})
	}
}

func TestFaultsApplyToTokenExchange(t *testing.T) {
	s, c := start(t, Options{})
	s.FailNext(1, http.StatusServiceUnavailable)
	rep, err := c.tokenRequest(context.Background(), DefaultSecretKey)
	if err != nil || rep.status != http.StatusServiceUnavailable {
		t.Fatalf("token exchange during a 5xx burst: %v, %d", err, rep.status)
	}
	_ = c.token(t)
}

func TestBrokenPage(t *testing.T) {
	cases := []struct {
		fault      PageFault
		wantStatus int
	}{
		{PageServerError, http.StatusInternalServerError},
		{PageMalformed, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.fault.String(), func(t *testing.T) {
			s, c := start(t, Options{Devices: 300})
			tok := c.token(t)
			s.BreakPage(100, tc.fault)
			for range 3 { // a broken page stays broken
				rep, err := c.search(context.Background(), tok, "in:devices", 100, 100, nil)
				if err != nil {
					t.Fatal(err)
				}
				if rep.status != tc.wantStatus || json.Valid(rep.body) == (tc.fault == PageMalformed) {
					t.Fatalf("status %d valid JSON %v, want %d and the opposite", rep.status, json.Valid(rep.body), tc.wantStatus)
				}
			}
			for _, from := range []int{0, 200} {
				if _, err := decodePage(must(c.search(context.Background(), tok, "in:devices", from, 100, nil))); err != nil {
					t.Fatalf("page from %d: %v", from, err)
				}
			}
			s.RepairPage(100)
			if _, err := decodePage(must(c.search(context.Background(), tok, "in:devices", 100, 100, nil))); err != nil {
				t.Fatalf("repaired page: %v", err)
			}
			st := s.Stats()
			if st.ServerErrors+st.MalformedPages != 3 || st.SearchPages != 3 {
				t.Fatalf("stats %+v, want 3 broken and 3 whole pages", st)
			}
		})
	}
}

func must(rep reply, err error) reply {
	if err != nil {
		panic(err)
	}
	return rep
}

func TestExpireTokens(t *testing.T) {
	s, c := start(t, Options{Devices: 50})
	tok := c.token(t)
	s.ExpireTokens()
	if got := statuses(t, c, tok, 1); got[0] != http.StatusUnauthorized {
		t.Fatalf("status %d after ExpireTokens, want 401", got[0])
	}
	if got := statuses(t, c, c.token(t), 1); got[0] != http.StatusOK {
		t.Fatalf("status %d with a new token, want 200", got[0])
	}
}

func TestExpireTokensAfter(t *testing.T) {
	s, c := start(t, Options{Devices: 50})
	tok := c.token(t)
	s.ExpireTokensAfter(3)
	got := statuses(t, c, tok, 5)
	want := []int{200, 200, 200, 401, 401}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
	if got := statuses(t, c, c.token(t), 2); got[0] != 200 || got[1] != 200 {
		t.Fatalf("statuses %v with a new token, want 200s", got)
	}
	if st := s.Stats(); st.Unauthorized != 2 {
		t.Fatalf("stats %+v, want 2 unauthorized", st)
	}
}

// TestLatency checks that added latency holds answers back: a client that
// waits less than the latency gets nothing.
func TestLatency(t *testing.T) {
	s, c := start(t, Options{Devices: 10})
	tok := c.token(t)
	s.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.search(ctx, tok, "in:devices", 0, 10, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("search under an hour of latency: %v, want deadline exceeded", err)
	}
	s.ClearFaults()
	if got := statuses(t, c, tok, 1); got[0] != http.StatusOK {
		t.Fatalf("status %d after ClearFaults, want 200", got[0])
	}
}

func TestClearFaults(t *testing.T) {
	s, c := start(t, Options{Devices: 10})
	tok := c.token(t)
	s.RateLimitNext(5, 0)
	s.FailNext(5, 500)
	s.BreakPage(0, PageServerError)
	s.ExpireTokensAfter(1)
	s.ClearFaults()
	if got := statuses(t, c, tok, 3); got[0] != 200 || got[2] != 200 {
		t.Fatalf("statuses %v after ClearFaults, want 200s", got)
	}
}
