package netboxemu

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestTokenSchemes(t *testing.T) {
	s, c := start(t, Options{Seed: 4, Devices: 10})
	v1, v2 := s.V1Token(), s.V2Token()
	if !v1Form.MatchString(v1) || !v2Form.MatchString(v2) {
		t.Fatalf("default tokens %q and %q do not have NetBox's forms", v1, v2)
	}
	cases := []struct {
		name       string
		auth       string
		wantStatus int
		wantDetail string
	}{
		{"v1", "Token " + v1, http.StatusOK, ""},
		{"v1 lower-case scheme", "token " + v1, http.StatusOK, ""},
		{"v2", "Bearer " + v2, http.StatusOK, ""},
		{"wrong v1", "Token " + strings.Repeat("0", 40), http.StatusForbidden, "Invalid v1 token"},
		{"v2 token with the Token scheme (4.5+)", "Token " + v2, http.StatusOK, ""},
		{"wrong v2", "Bearer nbt_000000000000." + strings.Repeat("0", 40), http.StatusForbidden, "Invalid v2 token"},
		{"v1 token with the Bearer scheme (4.5+)", "Bearer " + v1, http.StatusOK, ""},
		{"wrong v1 token with the Bearer scheme", "Bearer " + strings.Repeat("A", 40), http.StatusForbidden, "Invalid v1 token"},
		{"no header", "", http.StatusForbidden, "Authentication credentials were not provided."},
		{"other scheme", "Basic dXNlcjpwYXNz", http.StatusForbidden, "Authentication credentials were not provided."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := *c
			c.auth = tc.auth
			rep, err := c.get(context.Background(), DevicesPath)
			if err != nil {
				t.Fatal(err)
			}
			if rep.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rep.status, tc.wantStatus, rep.body)
			}
			if tc.wantDetail != "" {
				if want := `{"detail":"` + tc.wantDetail + `"}`; string(rep.body) != want {
					t.Fatalf("body %s, want %s", rep.body, want)
				}
			}
		})
	}
}

func TestDisabledSchemes(t *testing.T) {
	cases := []struct {
		name       string
		opts       Options
		v2         bool
		wantDetail string
	}{
		{"v2 before NetBox 4.5", Options{DisableV2: true}, true, "Authentication credentials were not provided."},
		{"v1 disabled", Options{DisableV1: true}, false, "Invalid v1 token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c := start(t, tc.opts)
			c.auth = "Token " + s.V1Token()
			if tc.v2 {
				c.auth = "Bearer " + s.V2Token()
			}
			rep, err := c.get(context.Background(), DevicesPath)
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"detail":"` + tc.wantDetail + `"}`; rep.status != http.StatusForbidden || string(rep.body) != want {
				t.Fatalf("status %d body %s, want 403 %s", rep.status, rep.body, want)
			}
		})
	}
}

func TestConfiguredTokens(t *testing.T) {
	v1 := "0123456789abcdefghijKLMNOPQRSTuvwxyz0123" // a user-set key: alphanumeric, not hex
	v2 := "nbt_abcdefABCDEF.0123456789abcdefghijABCDEFGHIJ0123456789"
	s, c := start(t, Options{V1Token: v1, V2Token: v2})
	if s.V1Token() != v1 || s.V2Token() != v2 {
		t.Fatalf("tokens %q %q, want the configured ones", s.V1Token(), s.V2Token())
	}
	for _, auth := range []string{"Token " + v1, "Bearer " + v2} {
		c.auth = auth
		if rep, err := c.get(context.Background(), DevicesPath); err != nil || rep.status != http.StatusOK {
			t.Fatalf("%s: %v, %d", auth, err, rep.status)
		}
	}
}

func TestMalformedConfiguredTokenPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New accepted a 5-character v1 token")
		}
	}()
	New(Options{V1Token: "short"})
}

func TestTokenExpiry(t *testing.T) {
	s, c := start(t, Options{Devices: 10})
	get := func() reply {
		rep, err := c.get(context.Background(), DevicesPath)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	s.ExpireTokens()
	if rep := get(); rep.status != http.StatusForbidden || string(rep.body) != `{"detail":"Token expired"}` {
		t.Fatalf("after ExpireTokens: %d %s", rep.status, rep.body)
	}
	s.RenewTokens()
	if rep := get(); rep.status != http.StatusOK {
		t.Fatalf("after RenewTokens: %d", rep.status)
	}
	s.ExpireTokensAfter(2)
	var got []int
	for range 4 {
		got = append(got, get().status)
	}
	if want := []int{200, 200, 403, 403}; !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if st := s.Stats(); st.Forbidden != 3 {
		t.Fatalf("stats %+v, want 3 forbidden", st)
	}
}
