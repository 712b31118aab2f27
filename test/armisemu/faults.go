package armisemu

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// PageFault is how a broken search page fails.
type PageFault int

const (
	// PageServerError answers the page with 500 and an error body.
	PageServerError PageFault = iota + 1
	// PageMalformed answers the page with 200 and a JSON body cut in half.
	PageMalformed
)

// String names the fault for test output.
func (f PageFault) String() string {
	switch f {
	case PageServerError:
		return "server-error"
	case PageMalformed:
		return "malformed"
	default:
		return fmt.Sprintf("PageFault(%d)", int(f))
	}
}

// faultState holds the injected faults; mu guards every field.
type faultState struct {
	mu           sync.Mutex
	latency      time.Duration
	throttleLeft int
	retryAfter   time.Duration
	failLeft     int
	failStatus   int
	pages        map[int]PageFault
}

// injection is what the faults decide for one request. retryAfter is
// negative when the request is not throttled; status is zero when it is not
// failed.
type injection struct {
	latency    time.Duration
	retryAfter time.Duration
	status     int
}

// next consumes the faults due for one incoming request: throttling wins over
// a 5xx burst, and both are counted down only by requests they answer.
func (f *faultState) next() injection {
	f.mu.Lock()
	defer f.mu.Unlock()
	inj := injection{latency: f.latency, retryAfter: -1}
	switch {
	case f.throttleLeft > 0:
		f.throttleLeft--
		inj.retryAfter = f.retryAfter
	case f.failLeft > 0:
		f.failLeft--
		inj.status = f.failStatus
	}
	return inj
}

func (f *faultState) page(from int) (PageFault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pages[from]
	return p, ok
}

// SetLatency adds d to every later request (zero removes it). A request whose
// client gives up during the wait gets no answer.
func (s *Server) SetLatency(d time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.latency = max(d, 0)
}

// RateLimitNext answers the next k requests of any kind with 429 and a
// Retry-After header of retryAfter rounded up to whole seconds. It replaces
// any throttling still pending.
func (s *Server) RateLimitNext(k int, retryAfter time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.throttleLeft = max(k, 0)
	s.faults.retryAfter = max(retryAfter, 0)
}

// FailNext answers the next k requests of any kind (after pending 429s) with
// status, which must be a 5xx code. It replaces any burst still pending.
func (s *Server) FailNext(k, status int) {
	if status < 500 || status > 599 {
		panic(fmt.Sprintf("armisemu: FailNext needs a 5xx status, got %d", status))
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.failLeft = max(k, 0)
	s.faults.failStatus = status
}

// BreakPage makes every search whose from parameter equals from fail with
// fault, whatever the query, until RepairPage or ClearFaults.
func (s *Server) BreakPage(from int, fault PageFault) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.pages[from] = fault
}

// RepairPage undoes BreakPage for from.
func (s *Server) RepairPage(from int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	delete(s.faults.pages, from)
}

// ClearFaults removes latency, pending 429s and 5xx bursts, broken pages and a
// pending token expiry. Tokens already expired stay expired.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	s.faults.latency = 0
	s.faults.throttleLeft, s.faults.failLeft = 0, 0
	clear(s.faults.pages)
	s.faults.mu.Unlock()
	s.tokens.expireAfter(0)
}

// Stats is a snapshot of what the server has answered since it was created.
type Stats struct {
	// Requests counts every request received, faults included.
	Requests int64
	// TokensIssued counts successful token exchanges.
	TokensIssued int64
	// TokensRefused counts token exchanges refused for a missing or wrong key.
	TokensRefused int64
	// SearchPages counts search pages answered with 200 and a whole body.
	SearchPages int64
	// Unauthorized counts searches refused with 401.
	Unauthorized int64
	// RateLimited counts requests answered with an injected 429.
	RateLimited int64
	// ServerErrors counts requests answered with an injected 5xx, broken
	// pages included.
	ServerErrors int64
	// MalformedPages counts broken pages answered with a truncated body.
	MalformedPages int64
	// BadRequests counts searches refused with 400 (bad AQL or paging).
	BadRequests int64
	// NotFound counts requests for unknown paths or with the wrong method.
	NotFound int64
}

// counters are the live, atomically updated values behind Stats.
type counters struct {
	requests, tokensIssued, tokensRefused, searchPages, unauthorized atomic.Int64
	rateLimited, serverErrors, malformedPages, badRequests, notFound atomic.Int64
}

// Stats returns the counters. Each value is read atomically; the snapshot as
// a whole is not, which only matters while requests are in flight.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:       c.requests.Load(),
		TokensIssued:   c.tokensIssued.Load(),
		TokensRefused:  c.tokensRefused.Load(),
		SearchPages:    c.searchPages.Load(),
		Unauthorized:   c.unauthorized.Load(),
		RateLimited:    c.rateLimited.Load(),
		ServerErrors:   c.serverErrors.Load(),
		MalformedPages: c.malformedPages.Load(),
		BadRequests:    c.badRequests.Load(),
		NotFound:       c.notFound.Load(),
	}
}
