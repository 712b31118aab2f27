package netboxemu

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// listStatuses sends k device list requests and returns their statuses.
func listStatuses(t *testing.T, c *apiClient, k int) []int {
	t.Helper()
	out := make([]int, k)
	for i := range out {
		out[i] = must(c.get(context.Background(), DevicesPath+"?limit=5")).status
	}
	return out
}

func TestRateLimitNext(t *testing.T) {
	s, c := start(t, Options{Devices: 20})
	s.RateLimitNext(2, 2500*time.Millisecond)
	rep := must(c.get(context.Background(), DevicesPath))
	if rep.status != http.StatusTooManyRequests || rep.header.Get("Retry-After") != "3" {
		t.Fatalf("status %d Retry-After %q, want 429 and 3", rep.status, rep.header.Get("Retry-After"))
	}
	if got := listStatuses(t, c, 2); !slices.Equal(got, []int{429, 200}) {
		t.Fatalf("statuses %v, want [429 200]", got)
	}
	if st := s.Stats(); st.RateLimited != 2 || st.DevicePages != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFailNext(t *testing.T) {
	for _, status := range []int{500, 502, 503} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			s, c := start(t, Options{Devices: 20})
			s.FailNext(3, status)
			rep := must(c.get(context.Background(), DevicesPath))
			if rep.status != status || json.Valid(rep.body) {
				t.Fatalf("status %d body %q, want %d and a non-JSON page", rep.status, rep.body, status)
			}
			if got := listStatuses(t, c, 3); !slices.Equal(got, []int{status, status, 200}) {
				t.Fatalf("statuses %v", got)
			}
			if st := s.Stats(); st.ServerErrors != 3 {
				t.Fatalf("stats %+v, want 3 server errors", st)
			}
		})
	}
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
			s.BreakPage(KindDevices, 100, tc.fault)
			for _, target := range []string{
				DevicesPath + "?limit=100&offset=100",
				DevicesPath + "?limit=100&offset=100&status=active", // whatever the filter
				DevicesPath + "?limit=100&start=101",                // cursor page starting at row 100
			} {
				rep := must(c.get(context.Background(), target))
				if rep.status != tc.wantStatus || json.Valid(rep.body) {
					t.Fatalf("%s: status %d valid JSON %v, want %d and invalid", target, rep.status, json.Valid(rep.body), tc.wantStatus)
				}
			}
			for _, target := range []string{
				DevicesPath + "?limit=100",
				DevicesPath + "?limit=100&offset=200",
				InterfacesPath + "?limit=100&offset=100", // other lists are whole
			} {
				if _, err := decodePage(must(c.get(context.Background(), target))); err != nil {
					t.Fatalf("%s: %v", target, err)
				}
			}
			s.RepairPage(KindDevices, 100)
			if _, err := decodePage(must(c.get(context.Background(), DevicesPath+"?limit=100&offset=100"))); err != nil {
				t.Fatalf("repaired page: %v", err)
			}
			st := s.Stats()
			if st.ServerErrors+st.MalformedPages != 3 || st.DevicePages != 3 || st.InterfacePages != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestLatency(t *testing.T) {
	s, c := start(t, Options{Devices: 5})
	s.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.get(ctx, DevicesPath); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request under an hour of latency: %v, want deadline exceeded", err)
	}
	s.SetLatency(0)
	if got := listStatuses(t, c, 1); got[0] != 200 {
		t.Fatalf("status %d after removing latency", got[0])
	}
}

func TestClearFaults(t *testing.T) {
	s, c := start(t, Options{Devices: 10})
	s.RateLimitNext(5, 0)
	s.FailNext(5, 503)
	s.BreakPage(KindDevices, 0, PageServerError)
	s.ExpireTokensAfter(1)
	s.SetLatency(time.Hour)
	s.ClearFaults()
	if got := listStatuses(t, c, 3); !slices.Equal(got, []int{200, 200, 200}) {
		t.Fatalf("statuses %v after ClearFaults", got)
	}
}

func TestFailNextRejectsNon5xx(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "5xx") {
			t.Fatalf("FailNext(1, 404) did not panic about 5xx: %v", r)
		}
	}()
	New(Options{}).FailNext(1, 404)
}
