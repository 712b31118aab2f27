// Package httpretry is what the HTTP integration clients (armis, netbox)
// share about failed requests: how a failure is classified (its kind for the
// integration.Observer, whether asking again can help, and the delay the
// answer asked for with Retry-After), and how long to wait between the
// attempts of one request (jittered exponential backoff, bounded attempts).
// Each client keeps its own loop around it: Armis re-authenticates once on a
// 401 and shrinks failing pages, NetBox does neither.
package httpretry

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/serviceradar/sync-operator/workers/integration"
)

// Failure kinds, as integration.Observer.Failure receives them.
const (
	// KindAuth is an answer refusing the credentials (401, 403).
	KindAuth = "auth"
	// KindRateLimited is a 429 answer.
	KindRateLimited = "rate_limited"
	// KindServer is any other refusal: 408, 5xx, a 4xx that repeats, a
	// redirect to another origin.
	KindServer = "server"
	// KindNetwork is a request that got no whole answer: a transport error,
	// a connection broken while the body was read, a request timeout.
	KindNetwork = "network"
	// KindDecode is a 200 answer that could not be used.
	KindDecode = "decode"
)

// Class is how one failed attempt counts and whether asking again can help.
type Class struct {
	// Kind is the failure kind (KindAuth, ...).
	Kind string
	// Retry says that the same request may succeed later.
	Retry bool
	// RetryAfter is the delay the answer asked for (Retry-After), zero when
	// it asked for none.
	RetryAfter time.Duration
}

// ForStatus classifies an answer other than 200 OK, reading its
// Retry-After against now: 401 and 403 refuse the credentials (not retried
// as such: the client decides whether a new token helps); 429 is rate
// limited and 408 and 5xx are server failures, both retried; any other
// status (400 for a query the server refuses, 404 for a wrong endpoint)
// repeats identically, a server failure not retried.
func ForStatus(resp *http.Response, now time.Time) Class {
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return Class{Kind: KindAuth}
	case code == http.StatusTooManyRequests:
		return Class{Kind: KindRateLimited, Retry: true, RetryAfter: RetryAfter(resp.Header.Get("Retry-After"), now)}
	case code >= 500 || code == http.StatusRequestTimeout:
		return Class{Kind: KindServer, Retry: true, RetryAfter: RetryAfter(resp.Header.Get("Retry-After"), now)}
	default:
		return Class{Kind: KindServer}
	}
}

// ForTransport classifies an error of http.Client.Do whose request's context
// is still live: a redirect the clients refused (integration.CheckRedirect)
// is a server failure not retried, since asking again is redirected again;
// anything else is a network failure, retried.
func ForTransport(err error) Class {
	if integration.RedirectRefusal(err) != nil {
		return Class{Kind: KindServer}
	}
	return Class{Kind: KindNetwork, Retry: true}
}

// ForDecode classifies an error decoding a 200 answer's body. readFailed
// says that reading the body failed (a broken connection, the request's
// timeout): a network failure, retried. Otherwise a page refused for its
// length (integration.ErrPageTooLarge) is a decode failure not retried, as
// the same request gets the same page, and any other error a malformed
// answer, a decode failure retried.
func ForDecode(err error, readFailed bool) Class {
	switch {
	case readFailed:
		return Class{Kind: KindNetwork, Retry: true}
	case errors.Is(err, integration.ErrPageTooLarge):
		return Class{Kind: KindDecode}
	default:
		return Class{Kind: KindDecode, Retry: true}
	}
}

// Defaults of Backoff fields left zero.
const (
	// DefaultMinBackoff is the wait before the first retry.
	DefaultMinBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff caps the exponential waits (a longer Retry-After is
	// honoured).
	DefaultMaxBackoff = 30 * time.Second
	// DefaultAttempts is how many failed attempts one request may take.
	DefaultAttempts = 6
)

// Backoff says how the failed attempts of one request are retried. Zero
// fields take the defaults.
type Backoff struct {
	// Min is the wait before the first retry; each further failure doubles
	// it, and each wait is jittered to between half and all of it.
	Min time.Duration
	// Max caps the exponential wait (never below Min); a longer Retry-After
	// is honoured, up to MaxRetryAfter.
	Max time.Duration
	// Attempts is how many failed attempts one request may take.
	Attempts int
}

// WithDefaults fills in the zero fields.
func (b Backoff) WithDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = DefaultMinBackoff
	}
	if b.Max <= 0 {
		b.Max = DefaultMaxBackoff
	}
	b.Max = max(b.Max, b.Min)
	if b.Attempts <= 0 {
		b.Attempts = DefaultAttempts
	}
	return b
}

// Delay is the wait after the failures-th failure of a request (1-based):
// an exponential step from Min, at most Max, jittered to between half and
// all of it, and at least retryAfter (a Retry-After longer than Max is
// honoured). jitter(n) draws from [0, n); nil means math/rand/v2's Int64N.
func (b Backoff) Delay(failures int, retryAfter time.Duration, jitter func(int64) int64) time.Duration {
	b = b.WithDefaults()
	if jitter == nil {
		jitter = rand.Int64N
	}
	step := b.Min
	for i := 1; i < failures && step < b.Max; i++ {
		step *= 2
	}
	step = min(step, b.Max)
	d := step/2 + time.Duration(jitter(int64(step-step/2)+1))
	return max(d, retryAfter)
}

// Retrier counts the failed attempts of one request against a Backoff and
// waits between them. The zero value retries by the defaults.
type Retrier struct {
	// Backoff bounds the attempts and spaces them.
	Backoff Backoff
	// Sleep waits between attempts; nil means Sleep.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter draws from [0, n); nil means math/rand/v2's Int64N.
	Jitter func(n int64) int64

	failures int
}

// Failed counts a failed attempt that may be retried, and reports whether
// another attempt is allowed.
func (r *Retrier) Failed() bool {
	r.failures++
	return r.failures < r.Backoff.WithDefaults().Attempts
}

// Failures is how many failed attempts Failed has counted.
func (r *Retrier) Failures() int { return r.failures }

// Wait sleeps before the next attempt: Backoff.Delay after the failures
// counted so far, at least retryAfter. It ends early, with an error
// wrapping ctx's, when ctx ends.
func (r *Retrier) Wait(ctx context.Context, retryAfter time.Duration) error {
	sleep := r.Sleep
	if sleep == nil {
		sleep = Sleep
	}
	return sleep(ctx, r.Backoff.Delay(r.failures, retryAfter, r.Jitter))
}
