package armisemu

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault"
)

// PageFault is how a broken search page fails.
type PageFault = apifault.PageFault

const (
	// PageServerError answers the page with 500 and an error body.
	PageServerError = apifault.PageServerError
	// PageMalformed answers the page with 200 and a JSON body cut in half.
	PageMalformed = apifault.PageMalformed
)

// armisAPI is how the fault injector answers for Armis: every error is the
// {"message","success":false} shape.
var armisAPI = apifault.API{
	Name: "armisemu",
	Reject: func(w http.ResponseWriter, status int) {
		msg := http.StatusText(status)
		if status == http.StatusTooManyRequests {
			msg = "Too many requests"
		}
		writeError(w, status, msg)
	},
	Error: writeError,
}

// SetLatency adds d to every later request (zero removes it). A request whose
// client gives up during the wait gets no answer.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// RateLimitNext answers the next k requests of any kind with 429 and a
// Retry-After header of retryAfter rounded up to whole seconds. It replaces
// any throttling still pending.
func (s *Server) RateLimitNext(k int, retryAfter time.Duration) {
	s.faults.RateLimitNext(k, retryAfter)
}

// FailNext answers the next k requests of any kind (after pending 429s) with
// status, which must be a 5xx code. It replaces any burst still pending.
func (s *Server) FailNext(k, status int) { s.faults.FailNext(k, status) }

// BreakPage makes every search whose from parameter equals from fail with
// fault, whatever the query, until RepairPage or ClearFaults.
func (s *Server) BreakPage(from int, fault PageFault) { s.faults.BreakPage(from, fault) }

// RepairPage undoes BreakPage for from.
func (s *Server) RepairPage(from int) { s.faults.RepairPage(from) }

// ClearFaults removes latency, pending 429s and 5xx bursts, broken pages and a
// pending token expiry. Tokens already expired stay expired.
func (s *Server) ClearFaults() {
	s.faults.Clear()
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

// counters are the live, atomically updated values behind Stats that the
// fault injector does not keep.
type counters struct {
	tokensIssued, tokensRefused, searchPages, unauthorized atomic.Int64
	badRequests, notFound                                  atomic.Int64
}

// Stats returns the counters. Each value is read atomically; the snapshot as
// a whole is not, which only matters while requests are in flight.
func (s *Server) Stats() Stats {
	c, f := &s.stats, s.faults.Counts()
	return Stats{
		Requests:       f.Requests,
		TokensIssued:   c.tokensIssued.Load(),
		TokensRefused:  c.tokensRefused.Load(),
		SearchPages:    c.searchPages.Load(),
		Unauthorized:   c.unauthorized.Load(),
		RateLimited:    f.RateLimited,
		ServerErrors:   f.ServerErrors,
		MalformedPages: f.MalformedPages,
		BadRequests:    c.badRequests.Load(),
		NotFound:       c.notFound.Load(),
	}
}
