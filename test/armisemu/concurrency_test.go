package armisemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// retryingFetch pages through aql the way a worker should: a new token on
// 401, a retry on 429, 5xx and a malformed body. It calls afterPage with the
// number of whole pages so far, and gives up after maxTries requests. When
// one page failed ten times in a row it calls repair (the test standing in
// for whoever fixes a broken page), so walkers that all wait on a page one
// of them broke cannot wait for ever.
func retryingFetch(c *apiClient, aql string, length, maxTries int, afterPage func(int), repair func()) ([]int, error) {
	var got []int
	tok := ""
	pages, failures := 0, 0
	for from, tries := 0, 0; ; tries++ {
		if tries == maxTries {
			return nil, fmt.Errorf("gave up after %d requests at from %d", maxTries, from)
		}
		if tok == "" {
			rep, err := c.tokenRequest(context.Background(), DefaultSecretKey)
			if err != nil {
				return nil, err
			}
			var ans tokenAnswer
			if rep.status == http.StatusOK && json.Unmarshal(rep.body, &ans) == nil {
				tok = ans.Data.AccessToken
			}
			continue
		}
		rep, err := c.search(context.Background(), tok, aql, from, length, nil)
		if err != nil {
			return nil, err
		}
		if rep.status == http.StatusUnauthorized {
			tok = ""
			continue
		}
		p, err := decodePage(rep)
		if err != nil {
			if failures++; failures%10 == 0 {
				repair()
			}
			continue // 429, 5xx or a broken body: try the same page again
		}
		failures = 0
		got = append(got, ids(p.Data.Results)...)
		pages++
		afterPage(pages)
		if p.Data.Next == nil {
			return got, nil
		}
		from = *p.Data.Next
	}
}

func TestConcurrentClientsUnderFaults(t *testing.T) {
	const n, walkers = 2000, 8
	s, c := start(t, Options{Seed: 21, Devices: n})
	want, err := s.MatchingIDs(`in:devices boundaries:"Corporate"`)
	if err != nil {
		t.Fatal(err)
	}

	// Every walker injects a fault after each page it gets, so faults land
	// on other walkers' requests while they page.
	inject := func(k int) {
		switch k % 5 {
		case 0:
			s.RateLimitNext(2, 0)
		case 1:
			s.FailNext(2, http.StatusBadGateway)
		case 2:
			s.ExpireTokensAfter(3)
		case 3:
			s.BreakPage(300, PageMalformed)
		case 4:
			s.RepairPage(300)
			_ = s.Stats()
		}
	}
	results := make([][]int, walkers)
	errs := make([]error, walkers)
	var wg sync.WaitGroup
	for w := range walkers {
		aql := "in:devices"
		if w%2 == 1 {
			aql = `in:devices boundaries:"Corporate"`
		}
		wg.Go(func() {
			results[w], errs[w] = retryingFetch(c, aql, 100, 100000, func(k int) { inject(k + w) }, func() { s.RepairPage(300) })
		})
	}
	wg.Wait()

	all := make([]int, n)
	for i := range all {
		all[i] = i + 1
	}
	for w := range walkers {
		if errs[w] != nil {
			t.Fatalf("walker %d: %v", w, errs[w])
		}
		expect := all
		if w%2 == 1 {
			expect = want
		}
		if !slices.Equal(results[w], expect) {
			t.Fatalf("walker %d got %d ids, want %d", w, len(results[w]), len(expect))
		}
	}
	// Each walker gets each page whole exactly once, and every request falls
	// in exactly one counter.
	wantPages := int64(walkers/2) * int64((len(all)+99)/100+(len(want)+99)/100)
	st := s.Stats()
	sum := st.TokensIssued + st.TokensRefused + st.SearchPages + st.Unauthorized + st.RateLimited +
		st.ServerErrors + st.MalformedPages + st.BadRequests + st.NotFound
	if st.SearchPages != wantPages || st.Requests != sum {
		t.Fatalf("stats %+v: want %d whole pages and requests equal to the sum of the kinds (%d)", st, wantPages, sum)
	}
}
