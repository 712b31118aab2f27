package netboxemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// retryingFetch follows next from target the way a worker should: a retry
// on 429, 5xx and a malformed body, a token renewal (by the test, standing
// in for an operator) on 403. It calls afterPage with the number of whole
// pages so far and gives up after maxTries requests. When one page failed
// ten times in a row it calls repair (the test standing in for whoever fixes
// a broken page), so walkers that all wait on a page one of them broke cannot
// wait for ever.
func retryingFetch(c *apiClient, renew func(), target string, maxTries int, afterPage func(int), repair func()) ([]int, error) {
	var got []int
	pages, failures := 0, 0
	for tries := 0; target != ""; tries++ {
		if tries == maxTries {
			return nil, fmt.Errorf("gave up after %d requests at %s", maxTries, target)
		}
		rep, err := c.get(context.Background(), target)
		if err != nil {
			return nil, err
		}
		if rep.status == http.StatusForbidden {
			renew()
			continue
		}
		p, err := decodePage(rep)
		if err != nil {
			if failures++; failures%10 == 0 {
				repair()
			}
			continue
		}
		failures = 0
		for _, raw := range p.Results {
			var obj struct {
				ID int `json:"id"`
			}
			if err := json.Unmarshal(raw, &obj); err != nil {
				return nil, fmt.Errorf("decoding a result of %s: %w", target, err)
			}
			got = append(got, obj.ID)
		}
		pages++
		afterPage(pages)
		target = ""
		if p.Next != nil {
			target = *p.Next
		}
	}
	return got, nil
}

func TestConcurrentClientsUnderFaults(t *testing.T) {
	const n, walkers = 500, 8
	s, c := start(t, Options{Seed: 21, Devices: n})
	active, err := s.MatchingDeviceIDs("status=active")
	if err != nil {
		t.Fatal(err)
	}
	v2 := *c
	v2.auth = "Bearer " + s.V2Token()
	var macIDs []int // physical MACs and the virtual MACs of router pairs
	for m := range s.inv.macTotal() {
		if _, ok := s.inv.macObject(m); ok {
			macIDs = append(macIDs, m+1)
		}
	}

	inject := func(k int) {
		switch k % 6 {
		case 0:
			s.RateLimitNext(2, 0)
		case 1:
			s.FailNext(2, http.StatusServiceUnavailable)
		case 2:
			s.ExpireTokensAfter(3)
		case 3:
			s.BreakPage(KindDevices, 100, PageMalformed)
		case 4:
			s.RepairPage(KindDevices, 100)
		case 5:
			_ = s.Stats()
		}
	}
	type job struct {
		client *apiClient
		target string
		want   []int
	}
	jobs := []job{
		{c, DevicesPath + "?limit=50", seq(n)},
		{&v2, DevicesPath + "?brief=1&limit=50&status=active", active},
		{c, InterfacesPath + "?limit=100", seq(3 * n)},
		{&v2, MACAddressesPath + "?limit=100", macIDs},
	}
	results := make([][]int, walkers)
	errs := make([]error, walkers)
	var wg sync.WaitGroup
	for w := range walkers {
		j := jobs[w%len(jobs)]
		wg.Go(func() {
			results[w], errs[w] = retryingFetch(j.client, s.RenewTokens, j.target, 100000, func(k int) { inject(k + w) },
				func() { s.RepairPage(KindDevices, 100) })
		})
	}
	wg.Wait()

	for w := range walkers {
		if errs[w] != nil {
			t.Fatalf("walker %d: %v", w, errs[w])
		}
		if want := jobs[w%len(jobs)].want; !slices.Equal(slices.Sorted(slices.Values(results[w])), want) {
			t.Fatalf("walker %d got %d ids, want %d", w, len(results[w]), len(want))
		}
	}
	// Each walker gets each page whole exactly once, and every request
	// falls in exactly one counter.
	st := s.Stats()
	pagesOf := func(rows, limit int) int64 { return int64((rows + limit - 1) / limit) }
	perRound := walkers / len(jobs)
	wantDevices := int64(perRound) * (pagesOf(n, 50) + pagesOf(len(active), 50))
	wantIfaces := int64(perRound) * pagesOf(3*n, 100)
	wantMACs := int64(perRound) * pagesOf(len(macIDs), 100)
	sum := st.DevicePages + st.InterfacePages + st.MACAddressPages + st.Forbidden + st.RateLimited +
		st.ServerErrors + st.MalformedPages + st.BadRequests + st.Redirects + st.NotFound
	if st.DevicePages != wantDevices || st.InterfacePages != wantIfaces || st.MACAddressPages != wantMACs || st.Requests != sum {
		t.Fatalf("stats %+v: want %d/%d/%d pages and requests equal to the sum (%d)", st, wantDevices, wantIfaces, wantMACs, sum)
	}
}
