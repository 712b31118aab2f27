package netboxemu

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// PageFault is how a broken list page fails.
type PageFault int

const (
	// PageServerError answers the page with 500 and Django's error page.
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

// pageKey names the page of a list that starts at a row.
type pageKey struct {
	kind Kind
	row  int
}

// faultState holds the injected faults; mu guards every field.
type faultState struct {
	mu           sync.Mutex
	latency      time.Duration
	throttleLeft int
	retryAfter   time.Duration
	failLeft     int
	failStatus   int
	pages        map[pageKey]PageFault
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

func (f *faultState) page(k pageKey) (PageFault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pages[k]
	return p, ok
}

// SetLatency adds d to every later request (zero removes it). A request whose
// client gives up during the wait gets no answer.
func (s *Server) SetLatency(d time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.latency = max(d, 0)
}

// RateLimitNext answers the next k requests with 429 and a Retry-After
// header of retryAfter rounded up to whole seconds, as a proxy in front of
// NetBox would. It replaces any throttling still pending.
func (s *Server) RateLimitNext(k int, retryAfter time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.throttleLeft = max(k, 0)
	s.faults.retryAfter = max(retryAfter, 0)
}

// FailNext answers the next k requests (after pending 429s) with status,
// which must be a 5xx code; 503 is what NetBox answers in maintenance. It
// replaces any burst still pending.
func (s *Server) FailNext(k, status int) {
	if status < 500 || status > 599 {
		panic(fmt.Sprintf("netboxemu: FailNext needs a 5xx status, got %d", status))
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.failLeft = max(k, 0)
	s.faults.failStatus = status
}

// BreakPage makes the page of kind's list that starts at row fail with
// fault, whatever the filters, until RepairPage or ClearFaults. With
// limit/offset paging the row is the offset; with cursor paging it is the
// position of the page's first result in the list.
func (s *Server) BreakPage(kind Kind, row int, fault PageFault) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.pages[pageKey{kind, row}] = fault
}

// RepairPage undoes BreakPage for kind and row.
func (s *Server) RepairPage(kind Kind, row int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	delete(s.faults.pages, pageKey{kind, row})
}

// ClearFaults removes latency, pending 429s and 5xx bursts, broken pages and a
// pending token expiry. Expired tokens stay expired until RenewTokens.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	s.faults.latency = 0
	s.faults.throttleLeft, s.faults.failLeft = 0, 0
	clear(s.faults.pages)
	s.faults.mu.Unlock()
	s.ExpireTokensAfter(0)
}

// Stats is a snapshot of what the server has answered since it was created.
// Every request falls in exactly one counter besides Requests.
type Stats struct {
	// Requests counts every request received, faults included.
	Requests int64
	// DevicePages counts device pages answered with 200 and a whole body.
	DevicePages int64
	// InterfacePages counts interface pages answered whole.
	InterfacePages int64
	// MACAddressPages counts MAC address pages answered whole.
	MACAddressPages int64
	// Forbidden counts requests refused with 403.
	Forbidden int64
	// RateLimited counts requests answered with an injected 429.
	RateLimited int64
	// ServerErrors counts requests answered with an injected 5xx, broken
	// pages included.
	ServerErrors int64
	// MalformedPages counts broken pages answered with a truncated body.
	MalformedPages int64
	// BadRequests counts requests refused with 400 (invalid filter values).
	BadRequests int64
	// Redirects counts 301s to the path with its trailing slash.
	Redirects int64
	// NotFound counts requests for unknown paths or with the wrong method.
	NotFound int64
}

// counters are the live, atomically updated values behind Stats.
type counters struct {
	requests, devicePages, interfacePages, macPages, forbidden, rateLimited atomic.Int64
	serverErrors, malformedPages, badRequests, redirects, notFound          atomic.Int64
}

func (c *counters) pages(k Kind) *atomic.Int64 {
	switch k {
	case KindInterfaces:
		return &c.interfacePages
	case KindMACAddresses:
		return &c.macPages
	default:
		return &c.devicePages
	}
}

// Stats returns the counters. Each value is read atomically; the snapshot as
// a whole is not, which only matters while requests are in flight.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:        c.requests.Load(),
		DevicePages:     c.devicePages.Load(),
		InterfacePages:  c.interfacePages.Load(),
		MACAddressPages: c.macPages.Load(),
		Forbidden:       c.forbidden.Load(),
		RateLimited:     c.rateLimited.Load(),
		ServerErrors:    c.serverErrors.Load(),
		MalformedPages:  c.malformedPages.Load(),
		BadRequests:     c.badRequests.Load(),
		Redirects:       c.redirects.Load(),
		NotFound:        c.notFound.Load(),
	}
}
