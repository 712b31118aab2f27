package armisemu

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTokenExchange(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC)
	_, c := start(t, Options{Devices: 10, Clock: func() time.Time { return now }})
	cases := []struct {
		name       string
		method     string
		path       string // URL suffix after the token path
		body       string
		wantStatus int
		wantBody   string // exact body, when set
	}{
		{"form body", http.MethodPost, "", "secret_key=" + DefaultSecretKey, http.StatusOK, ""},
		{"query string", http.MethodPost, "?secret_key=" + DefaultSecretKey, "", http.StatusOK, ""},
		{"wrong key", http.MethodPost, "", "secret_key=nope", http.StatusBadRequest, `{"message":"Invalid secret key","success":false}`},
		{"missing key", http.MethodPost, "", "", http.StatusBadRequest, `{"message":"Invalid secret key","success":false}`},
		{"GET", http.MethodGet, "", "", http.StatusMethodNotAllowed, `{"message":"Method Not Allowed","success":false}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, c.base+TokenPath+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rep, err := c.do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if rep.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rep.status, tc.wantStatus, rep.body)
			}
			if tc.wantBody != "" && string(rep.body) != tc.wantBody {
				t.Fatalf("body %s, want %s", rep.body, tc.wantBody)
			}
			if tc.wantStatus != http.StatusOK {
				return
			}
			var ans tokenAnswer
			if err := json.Unmarshal(rep.body, &ans); err != nil {
				t.Fatalf("decoding %s: %v", rep.body, err)
			}
			if !ans.Success || ans.Data.AccessToken == "" {
				t.Fatalf("answer %s lacks success or token", rep.body)
			}
			if want := "2026-03-04T06:06:07.890123+00:00"; ans.Data.ExpirationUTC != want {
				t.Fatalf("expiration_utc %q, want %q (one hour on)", ans.Data.ExpirationUTC, want)
			}
		})
	}
}

func TestSearchAuthorization(t *testing.T) {
	_, c := start(t, Options{Devices: 10})
	tok := c.token(t)
	cases := []struct {
		name       string
		auth       string
		wantStatus int
	}{
		{"raw token", tok, http.StatusOK},
		{"bearer scheme", "Bearer " + tok, http.StatusUnauthorized},
		{"missing", "", http.StatusUnauthorized},
		{"unknown token", "0123456789abcdef0123456789abcdef", http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := c.search(context.Background(), tc.auth, "in:devices", 0, 5, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rep.status, tc.wantStatus, rep.body)
			}
			if tc.wantStatus == http.StatusUnauthorized {
				if want := `{"message":"Invalid access token","success":false}`; string(rep.body) != want {
					t.Fatalf("body %s, want %s", rep.body, want)
				}
			}
		})
	}
}

// fakeClock is a settable clock for token expiry.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func TestTokenExpiresAfterTTL(t *testing.T) {
	clock := &fakeClock{now: DefaultEpoch()}
	s, c := start(t, Options{Devices: 10, Clock: clock.Now, TokenTTL: 10 * time.Minute})
	tok := c.token(t)
	steps := []struct {
		advance    time.Duration
		wantStatus int
	}{
		{0, http.StatusOK},
		{10*time.Minute - time.Microsecond, http.StatusOK},
		{time.Microsecond, http.StatusUnauthorized},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		rep, err := c.search(context.Background(), tok, "in:devices", 0, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.status != st.wantStatus {
			t.Fatalf("step %d: status %d, want %d", i, rep.status, st.wantStatus)
		}
	}
	if rep, err := c.search(context.Background(), c.token(t), "in:devices", 0, 1, nil); err != nil || rep.status != http.StatusOK {
		t.Fatalf("fresh token after expiry: %v, %d", err, rep.status)
	}
	if got := s.Stats(); got.TokensIssued != 2 || got.Unauthorized != 1 {
		t.Fatalf("stats %+v, want 2 tokens issued and 1 unauthorized", got)
	}
}
