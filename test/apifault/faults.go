package apifault

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// PageFault is how a broken page fails.
type PageFault int

const (
	// PageServerError answers the page with 500 and the body API.Reject
	// writes.
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

// API is how an emulated API writes the answers an Injector gives on its
// behalf.
type API struct {
	// Name is the emulator's package name; it prefixes the Injector's
	// panics.
	Name string
	// Reject writes an injected 429 or 5xx, and the 500 of a broken page, as
	// whatever stands in front of the API would write it. For a 429 the
	// Retry-After header is already set.
	Reject func(w http.ResponseWriter, status int)
	// Error writes the API's own error answer carrying msg, for a page that
	// could not be rendered.
	Error func(w http.ResponseWriter, status int, msg string)
}

// Counts is a snapshot of what an Injector has seen and answered.
type Counts struct {
	// Requests counts every request Admit saw, faults included.
	Requests int64
	// RateLimited counts requests answered with an injected 429.
	RateLimited int64
	// ServerErrors counts requests answered with an injected 5xx, broken
	// pages included.
	ServerErrors int64
	// MalformedPages counts broken pages answered with a truncated body.
	MalformedPages int64
}

// Injector holds the faults injected into one emulator, applies them to its
// requests (Admit) and pages (ServePage), and counts what it answers. K names
// a page: whatever a broken page is keyed by, such as an offset or a list and
// a row. All methods are safe for concurrent use.
type Injector[K comparable] struct {
	api API

	requests, rateLimited, serverErrors, malformedPages atomic.Int64

	// mu guards the fault state below.
	mu           sync.Mutex
	latency      time.Duration
	throttleLeft int
	retryAfter   time.Duration
	failLeft     int
	failStatus   int
	pages        map[K]PageFault
}

// NewInjector returns an Injector with no faults that answers through api.
// It panics when api lacks Reject or Error, as a test helper would on a
// programming error.
func NewInjector[K comparable](api API) *Injector[K] {
	if api.Reject == nil || api.Error == nil {
		panic(fmt.Sprintf("apifault: API %q needs both Reject and Error", api.Name))
	}
	return &Injector[K]{api: api, pages: map[K]PageFault{}}
}

// SetLatency adds d to every later request (zero or less removes it). A
// request whose client gives up during the wait gets no answer.
func (in *Injector[K]) SetLatency(d time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.latency = max(d, 0)
}

// RateLimitNext answers the next k requests with 429 and a Retry-After header
// of retryAfter rounded up to whole seconds. It replaces any throttling still
// pending.
func (in *Injector[K]) RateLimitNext(k int, retryAfter time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.throttleLeft = max(k, 0)
	in.retryAfter = max(retryAfter, 0)
}

// FailNext answers the next k requests (after pending 429s) with status. It
// replaces any burst still pending, and panics unless status is a 5xx code.
func (in *Injector[K]) FailNext(k, status int) {
	if status < 500 || status > 599 {
		panic(fmt.Sprintf("%s: FailNext needs a 5xx status, got %d", in.api.Name, status))
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.failLeft = max(k, 0)
	in.failStatus = status
}

// BreakPage makes every request for page fail with fault until RepairPage or
// Clear.
func (in *Injector[K]) BreakPage(page K, fault PageFault) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.pages[page] = fault
}

// RepairPage undoes BreakPage for page.
func (in *Injector[K]) RepairPage(page K) {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.pages, page)
}

// Clear removes latency, pending 429s and 5xx bursts, and broken pages.
func (in *Injector[K]) Clear() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.latency = 0
	in.throttleLeft, in.failLeft = 0, 0
	clear(in.pages)
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
func (in *Injector[K]) next() injection {
	in.mu.Lock()
	defer in.mu.Unlock()
	inj := injection{latency: in.latency, retryAfter: -1}
	switch {
	case in.throttleLeft > 0:
		in.throttleLeft--
		inj.retryAfter = in.retryAfter
	case in.failLeft > 0:
		in.failLeft--
		inj.status = in.failStatus
	}
	return inj
}

// Admit counts r and applies the faults due for it before the emulator
// answers it, as a proxy or gateway in front of the API would: it waits the
// latency, then answers a pending 429 or 5xx with API.Reject. It reports
// whether the emulator should go on to answer r; false means r is answered,
// or its client gave up during the wait.
func (in *Injector[K]) Admit(w http.ResponseWriter, r *http.Request) bool {
	in.requests.Add(1)
	inj := in.next()
	if inj.latency > 0 && !sleep(r, inj.latency) {
		return false
	}
	switch {
	case inj.retryAfter >= 0:
		in.rateLimited.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(inj.retryAfter)))
		in.api.Reject(w, http.StatusTooManyRequests)
		return false
	case inj.status != 0:
		in.serverErrors.Add(1)
		in.api.Reject(w, inj.status)
		return false
	}
	return true
}

// ServePage answers a request for page with the JSON body render returns,
// unless the page is broken: PageServerError answers 500 through API.Reject
// without rendering, PageMalformed answers 200 with half the body. A render
// error is answered 500 through API.Error. whole counts the pages answered
// with 200 and a whole body; it is counted before the answer is written, so
// a client that has the answer sees it counted.
func (in *Injector[K]) ServePage(w http.ResponseWriter, page K, whole *atomic.Int64, render func() ([]byte, error)) {
	in.mu.Lock()
	fault, broken := in.pages[page]
	in.mu.Unlock()
	if broken && fault == PageServerError {
		in.serverErrors.Add(1)
		in.api.Reject(w, http.StatusInternalServerError)
		return
	}
	body, err := render()
	if err != nil {
		in.api.Error(w, http.StatusInternalServerError, err.Error())
		return
	}
	if broken && fault == PageMalformed {
		in.malformedPages.Add(1)
		WriteJSON(w, http.StatusOK, body[:len(body)/2])
		return
	}
	whole.Add(1)
	WriteJSON(w, http.StatusOK, body)
}

// Counts returns the counters. Each value is read atomically; the snapshot as
// a whole is not, which only matters while requests are in flight.
func (in *Injector[K]) Counts() Counts {
	return Counts{
		Requests:       in.requests.Load(),
		RateLimited:    in.rateLimited.Load(),
		ServerErrors:   in.serverErrors.Load(),
		MalformedPages: in.malformedPages.Load(),
	}
}

// sleep waits d or until the request is cancelled, reporting whether the
// wait completed.
func sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// ceilSeconds is d in whole seconds, rounded up, as Retry-After carries it.
func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
