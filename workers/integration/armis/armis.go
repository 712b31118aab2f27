// Package armis is the sync worker's client of the Armis API v1 (see
// /work/shared/REFERENCE.md): it exchanges the source's secret key for an
// access token, runs each of the source's AQL queries as a paginated search
// and streams the devices to the runner page by page, merged across queries
// by Armis device id.
//
// A pass never holds the inventory: one page is decoded, mapped and emitted
// before the next is asked for. The only state that grows with the inventory
// is the set of device ids already emitted in the pass (see idSet): a bitset
// for ids below 2^26, so 1,000,000 dense ids (1..1,000,000, as Armis numbers
// devices) take 125 KiB; ids outside that range fall back to a map at about
// 20 to 40 bytes each, so 1,000,000 sparse ids would take some 20 to 40 MiB.
//
// Failures follow DESIGN.md section 8: a 401 on a search gets exactly one
// re-authentication and a retry of that page, and a second 401 fails the
// pass wrapping integration.ErrCredentials, as does a token exchange refused
// with 400, 401 or 403 (a wrong secret key); 429, 5xx, network errors and
// malformed pages are retried with jittered exponential backoff honouring
// Retry-After, and after repeated failures of one page its length is halved
// for the rest of the query. A page that still fails makes Fetch return an
// error: the pass is then not a full fetch. A page holding more devices than
// integration.PageItemLimit of its length, or a redirect to another origin,
// fails the page at once (asking again gets the same).
//
// Availability: a device is reported available unless the source's
// staleness is set (bundle.Source.StaleAfterSec, spec.armis.staleAfter) and
// Armis last saw it longer ago than that at the time of the pass; a device
// without a readable lastSeen stays available. Its timestamp is its lastSeen.
package armis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/serviceradar/sync-operator/wire/pagesize"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/httpretry"
)

// pageLimits are the search endpoint's page lengths (wire/pagesize): the
// default when the source's page size is zero, and the largest the API
// accepts, to which larger page sizes are capped.
var pageLimits = pagesize.MustFor(IntegrationType)

// MinPageSize is the length below which a failing page is never shrunk.
const MinPageSize = 10

// Names the client writes into device updates.
const (
	// IntegrationType is the integration_type metadata value and the
	// DeviceUpdate source of every device this client emits.
	IntegrationType = "armis"
	// MetaDeviceID is the metadata key holding the Armis device id.
	MetaDeviceID = "armis_device_id"
	// CredentialSecretKey is the key of the source's credentials that holds
	// the Armis API secret key.
	CredentialSecretKey = "secret_key"
)

// Defaults of Backoff and Client fields left zero.
const (
	// DefaultMinBackoff is the wait before the first retry of a page.
	DefaultMinBackoff = httpretry.DefaultMinBackoff
	// DefaultMaxBackoff caps the exponential waits (a longer Retry-After is
	// honoured).
	DefaultMaxBackoff = httpretry.DefaultMaxBackoff
	// DefaultAttempts is how many failed requests one page may take before
	// the pass fails.
	DefaultAttempts = httpretry.DefaultAttempts
	// DefaultShrinkAfter is how many failures of one page (429s aside)
	// halve the page length.
	DefaultShrinkAfter = 3
	// DefaultRequestTimeout bounds one HTTP request, body included.
	DefaultRequestTimeout = 2 * time.Minute
)

// Backoff says how failed requests are retried. Zero fields take the
// defaults (DefaultMinBackoff, DefaultMaxBackoff, DefaultAttempts,
// DefaultShrinkAfter).
type Backoff struct {
	// MinBackoff is the wait before the first retry; each further failure
	// of the same page doubles it, and each wait is jittered to between half
	// and all of it.
	MinBackoff time.Duration
	// MaxBackoff caps the exponential wait; a longer Retry-After is honoured
	// (up to httpretry.MaxRetryAfter; the wait ends with the run).
	MaxBackoff time.Duration
	// Attempts is how many failed requests one page may take (429, 5xx,
	// network, malformed answer) before Fetch gives up on it.
	Attempts int
	// ShrinkAfter is how many failures of one page, 429s aside, halve the
	// page length for the rest of the query (never below MinPageSize).
	ShrinkAfter int
}

// retry is the shared backoff of b (httpretry.Backoff).
func (b Backoff) retry() httpretry.Backoff {
	return httpretry.Backoff{Min: b.MinBackoff, Max: b.MaxBackoff, Attempts: b.Attempts}
}

func (b Backoff) withDefaults() Backoff {
	r := b.retry().WithDefaults()
	b.MinBackoff, b.MaxBackoff, b.Attempts = r.Min, r.Max, r.Attempts
	if b.ShrinkAfter <= 0 {
		b.ShrinkAfter = DefaultShrinkAfter
	}
	return b
}

// delay is the wait after the failures-th failure of a page (1-based), as
// httpretry.Backoff.Delay: an exponential step jittered to between half and
// all of it, at least retryAfter: the exponential part never exceeds
// MaxBackoff, a longer Retry-After is honoured. jitter(n) draws from [0, n).
func (b Backoff) delay(failures int, retryAfter time.Duration, jitter func(int64) int64) time.Duration {
	return b.retry().Delay(failures, retryAfter, jitter)
}

// query is one validated search of the source.
type query struct {
	label string
	aql   string
}

// Client fetches the inventory of one Armis source. It implements
// integration.Client; set Backoff and RequestTimeout before the first Fetch.
type Client struct {
	// Backoff says how failed requests are retried.
	Backoff Backoff
	// RequestTimeout bounds one HTTP request including its body; zero means
	// DefaultRequestTimeout. A request that times out is a network failure.
	RequestTimeout time.Duration

	hc          *http.Client
	tokenURL    string
	searchURL   string
	secret      string
	queries     []query
	pageSize    int
	partition   string
	sourceUID   string
	observer    integration.Observer
	now         func() time.Time
	sleep       func(ctx context.Context, d time.Duration) error
	jitter      func(n int64) int64
	searchField string
	// staleAfter: a device last seen longer ago than this is reported
	// unavailable; zero means never.
	staleAfter time.Duration

	mu  sync.Mutex
	tok accessToken
}

var _ integration.Client = (*Client)(nil)

// searchFields are the device fields the client asks for; the rest of a
// device (custom properties, sensor, ...) is never transferred.
var searchFields = []string{
	"id", "ipAddress", "ipv6", "macAddress", "name", "type", "category", "manufacturer", "model",
	"operatingSystem", "operatingSystemVersion", "lastSeen", "riskLevel", "boundaries", "tags", "site",
}

// New returns a Client for cfg.Source, sending its requests with a copy of
// hc (nil means a new http.Client) that follows redirects only within the
// endpoint's scheme, host and port (integration.CheckRedirect). It checks
// the source: an http or https endpoint (with or without a trailing
// /api/v1), a non-empty credentials.secret_key, at least one query with a
// non-empty AQL, and a page size that is not negative. Errors name the
// field, never the secret.
func New(cfg integration.Config, hc *http.Client) (*Client, error) {
	src := cfg.Source
	base, err := baseURL(src.Endpoint)
	if err != nil {
		return nil, err
	}
	secret := src.Credentials[CredentialSecretKey]
	if strings.TrimSpace(secret) == "" {
		return nil, fmt.Errorf("armis: credentials.%s is missing or empty", CredentialSecretKey)
	}
	if len(src.Queries) == 0 {
		return nil, errors.New("armis: queries: at least one query is required")
	}
	queries := make([]query, 0, len(src.Queries))
	for i, q := range src.Queries {
		aql := strings.TrimSpace(q.Query)
		if aql == "" {
			return nil, fmt.Errorf("armis: queries[%d].query is empty", i)
		}
		label := q.Label
		if label == "" {
			label = fmt.Sprintf("query-%d", i)
		}
		queries = append(queries, query{label: label, aql: aql})
	}
	if src.PageSize < 0 {
		return nil, fmt.Errorf("armis: page_size %d is negative", src.PageSize)
	}
	if src.StaleAfterSec < 0 {
		return nil, fmt.Errorf("armis: stale_after_sec %d is negative", src.StaleAfterSec)
	}
	pageSize := int(pageLimits.Resolve(src.PageSize))
	// Whatever client is given, redirects stay within the endpoint's origin.
	hc = integration.HTTPClient(hc)
	obs := cfg.Observer
	if obs == nil {
		obs = integration.NopObserver{}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Client{
		hc:          hc,
		tokenURL:    base + "/api/v1/access_token/",
		searchURL:   base + "/api/v1/search/",
		secret:      secret,
		queries:     queries,
		pageSize:    pageSize,
		partition:   src.Partition,
		sourceUID:   src.IntegrationSourceUID,
		observer:    obs,
		now:         now,
		sleep:       httpretry.Sleep,
		jitter:      rand.Int64N,
		searchField: strings.Join(searchFields, ","),
		staleAfter:  time.Duration(src.StaleAfterSec) * time.Second,
	}, nil
}

// baseURL checks the endpoint and returns it without a trailing slash or
// /api/v1, so API paths can be appended.
func baseURL(endpoint string) (string, error) {
	if strings.TrimSpace(endpoint) == "" {
		return "", errors.New("armis: endpoint is empty")
	}
	u, err := url.Parse(strings.TrimSpace(endpoint))
	if err != nil {
		return "", fmt.Errorf("armis: endpoint is not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("armis: endpoint scheme %q must be http or https", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("armis: endpoint has no host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("armis: endpoint must not carry user info, a query or a fragment")
	}
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/api/v1")
	u.RawPath = ""
	return strings.TrimRight(u.String(), "/"), nil
}

// Fetch runs every query of the source in order and streams the devices to
// emit, one call per page, skipping devices already emitted earlier in the
// pass. A nil error means every page of every query was fetched. A page that
// fails after its retries stops its query, the remaining queries still run,
// and Fetch returns the failures; refused credentials, a cancelled context or
// an error from emit stop the pass at once.
func (c *Client) Fetch(ctx context.Context, emit integration.Emit) error {
	return c.fetch(ctx, c.queries, emit)
}

// FetchChanged is Fetch over the devices seen after since: each query gets
// an after: term (second granular, in UTC; the terms of an AQL query all
// hold, so a query's own timeFrame: or after: still narrows it).
func (c *Client) FetchChanged(ctx context.Context, since time.Time, emit integration.Emit) error {
	after := " after:" + since.UTC().Format("2006-01-02T15:04:05")
	queries := make([]query, len(c.queries))
	for i, q := range c.queries {
		queries[i] = query{label: q.label, aql: q.aql + after}
	}
	return c.fetch(ctx, queries, emit)
}

func (c *Client) fetch(ctx context.Context, queries []query, emit integration.Emit) error {
	seen := &idSet{}
	var failed []error
	for _, q := range queries {
		err := c.fetchQuery(ctx, q, seen, emit)
		var pe *pageError
		switch {
		case err == nil:
		case errors.As(err, &pe):
			failed = append(failed, err)
		default:
			return err
		}
	}
	return errors.Join(failed...)
}

// pageError is a page that failed after its retries, or that the API
// refused outright: its query stops, the pass goes on and is not full.
type pageError struct {
	err error
}

func (e *pageError) Error() string { return e.err.Error() }
func (e *pageError) Unwrap() error { return e.err }

// fetchQuery pages through one query until its last page.
func (c *Client) fetchQuery(ctx context.Context, q query, seen *idSet, emit integration.Emit) error {
	length := c.pageSize
	for from := 0; ; {
		p, err := c.fetchPage(ctx, q, from, &length)
		if err != nil {
			return err
		}
		updates := c.mapPage(p.Results, q, seen)
		if len(updates) > 0 {
			if err := emit(ctx, updates); err != nil {
				return fmt.Errorf("armis: query %q: emitting page from %d: %w", q.label, from, err)
			}
		}
		if p.Next == nil || (p.Total != nil && *p.Next >= *p.Total) {
			return nil
		}
		from = *p.Next
	}
}

// mapPage converts the devices of a page not seen before in the pass.
func (c *Client) mapPage(devs []device, q query, seen *idSet) []results.DeviceUpdate {
	out := make([]results.DeviceUpdate, 0, len(devs))
	now := c.now()
	for i := range devs {
		// A device without an id cannot be merged; it still goes out.
		if devs[i].ID.ok && !seen.add(devs[i].ID.v) {
			continue
		}
		out = append(out, c.update(&devs[i], q.label, now))
	}
	return out
}

// fetchPage gets the page of q at from, retrying as Backoff says. length is
// the query's page length; it is halved here after repeated failures and
// stays so for the rest of the query.
func (c *Client) fetchPage(ctx context.Context, q query, from int, length *int) (*page, error) {
	b := c.Backoff.withDefaults()
	retrier := httpretry.Retrier{Backoff: b.retry(), Sleep: c.sleep, Jitter: c.jitter}
	shrinkable, reauthed := 0, false
	for {
		start := time.Now()
		p, tok, err := c.attempt(ctx, q, from, *length)
		if err == nil {
			c.observer.Page(len(p.Results), time.Since(start))
			return p, nil
		}
		where := fmt.Sprintf("armis: query %q: page from %d length %d", q.label, from, *length)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s: %w", where, ctxErr)
		}
		c.observer.Failure(err.kind)
		switch {
		case err.credentials:
			return nil, fmt.Errorf("%s: %w: %w", where, integration.ErrCredentials, err)
		case err.kind == httpretry.KindAuth:
			if reauthed {
				return nil, fmt.Errorf("%s: access token refused again after re-authentication: %w: %w",
					where, integration.ErrCredentials, err)
			}
			reauthed = true
			c.dropToken(tok)
			continue
		case !err.retryable:
			return nil, &pageError{fmt.Errorf("%s: %w", where, err)}
		}
		if !retrier.Failed() {
			return nil, &pageError{fmt.Errorf("%s: giving up after %d failed attempts: %w", where, retrier.Failures(), err)}
		}
		if err.kind != httpretry.KindRateLimited {
			shrinkable++
			if shrinkable%b.ShrinkAfter == 0 && *length > MinPageSize {
				*length = max(*length/2, MinPageSize)
			}
		}
		if serr := retrier.Wait(ctx, err.retryAfter); serr != nil {
			return nil, fmt.Errorf("%s: %w", where, serr)
		}
	}
}
