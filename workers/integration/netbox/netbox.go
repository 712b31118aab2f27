// Package netbox is the sync worker's client of the NetBox REST API v4
// (/work/shared/REFERENCE.md). For each filter query of a source it pages
// through /api/dcim/devices/ by following the answers' next links, looks up
// the MAC addresses of each page's devices (from /api/dcim/mac-addresses/ on
// NetBox 4.2+, else from /api/dcim/interfaces/) and streams the page to the
// runner as results.DeviceUpdates, so memory stays flat whatever the size of
// the inventory.
//
// Requests that meet 429, 5xx, network errors or malformed pages are retried
// with jittered exponential backoff that honours Retry-After; a page that
// still fails ends the run with an error, so it never counts as a full
// fetch. A 401 or 403 ends the run at once with an error wrapping
// integration.ErrCredentials. A page holding more items than
// integration.PageItemLimit of the page size asked for, or a redirect to
// another origin, ends the run at once (asking again gets the same).
package netbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/gateway/results"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// IntegrationType is the source type this client serves; device updates
// carry it as Source and as the integration_type metadata.
const IntegrationType = "netbox"

// CredentialAPIToken is the credentials key holding the NetBox API token:
// a v1 token (40 hex digits, sent as "Token <token>") or a v2 token
// (nbt_<key>.<token>, sent as "Bearer <token>").
const CredentialAPIToken = "api_token"

// MetaDeviceID is the metadata key of NetBox's numeric device id, the
// device's strong identifier.
const MetaDeviceID = "netbox_device_id"

// Page sizes (NetBox's PAGINATE_COUNT and MAX_PAGE_SIZE defaults).
const (
	// DefaultPageSize is used when the source's page size is zero.
	DefaultPageSize = 50
	// MaxPageSize caps the source's page size.
	MaxPageSize = 1000
)

// Retry defaults for the Client's exported fields.
const (
	// DefaultMinBackoff is the first retry delay.
	DefaultMinBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff caps the exponential retry delays (a longer
	// Retry-After is honoured).
	DefaultMaxBackoff = 30 * time.Second
	// DefaultMaxAttempts bounds the attempts of one request.
	DefaultMaxAttempts = 6
)

// API paths, relative to the endpoint.
const (
	devicesPath      = "/api/dcim/devices/"
	interfacesPath   = "/api/dcim/interfaces/"
	macAddressesPath = "/api/dcim/mac-addresses/"
	// lastUpdatedFilter selects devices updated at or after an instant.
	lastUpdatedFilter = "last_updated__gte"
)

// The fields= of each list (NetBox 4.0+; names a NetBox version lacks are
// ignored): only what the client decodes.
const (
	deviceFields    = "id,name,status,site,role,device_type,primary_ip4,primary_ip6,last_updated"
	interfaceFields = "id,device,mac_address,mac_addresses"
	macFields       = "id,mac_address,assigned_object"
)

// macBatchSize is how many device ids one MAC lookup names: 200 ids keep
// the request line well under the 8 KiB proxies commonly accept.
const macBatchSize = 200

// defaultHTTPTimeout bounds one request when New gets no http.Client.
const defaultHTTPTimeout = 2 * time.Minute

// Client fetches the devices of one NetBox source. Its exported fields may
// be changed after New and before Fetch; Fetch may run concurrently with
// itself as long as they are not changed meanwhile.
type Client struct {
	// MinBackoff is the delay before the first retry of a request; each
	// further retry doubles it, with jitter. Zero means DefaultMinBackoff.
	MinBackoff time.Duration
	// MaxBackoff caps the exponential retry delay; a longer Retry-After is
	// honoured (up to integration.MaxRetryAfter). Zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// MaxAttempts is how many times one request (a page) is tried before
	// the run fails. Zero means DefaultMaxAttempts.
	MaxAttempts int

	hc        *http.Client
	base      *url.URL // scheme://host[/prefix], no trailing slash
	auth      string   // the Authorization header value
	token     string   // only to redact it from error text
	pageSize  int
	queries   []query
	partition string
	sourceUID string
	obs       integration.Observer
	now       func() time.Time
	// sleep waits between attempts; tests replace it to record delays.
	sleep func(ctx context.Context, d time.Duration) error
}

// query is one pass over the device list.
type query struct {
	label  string     // query_label metadata; empty for the unfiltered pass
	name   string     // how errors name the query
	values url.Values // the device list's query parameters, limit included
}

var _ integration.Client = (*Client)(nil)

// New returns a Client for cfg.Source. It checks the endpoint (an absolute
// http or https URL), the api_token credential and the queries (URL query
// strings such as "status=active&site=hq"); errors name the field. hc nil
// means a client with a two-minute timeout per request. The client sends
// with a copy of hc that follows redirects only within the endpoint's
// scheme, host and port (integration.CheckRedirect).
func New(cfg integration.Config, hc *http.Client) (*Client, error) {
	src := cfg.Source
	if src.Type != "" && src.Type != IntegrationType {
		return nil, fmt.Errorf("netbox: type: source is of type %q, not %q", src.Type, IntegrationType)
	}
	base, err := parseEndpoint(src.Endpoint)
	if err != nil {
		return nil, err
	}
	token, err := parseToken(src.Credentials[CredentialAPIToken])
	if err != nil {
		return nil, err
	}
	pageSize := int(src.PageSize)
	switch {
	case pageSize <= 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	queries, err := parseQueries(src.Queries, pageSize)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Timeout: defaultHTTPTimeout}
	}
	// Whatever client is given, redirects stay within the endpoint's origin.
	hc = integration.HTTPClient(hc)
	c := &Client{
		MinBackoff:  DefaultMinBackoff,
		MaxBackoff:  DefaultMaxBackoff,
		MaxAttempts: DefaultMaxAttempts,
		hc:          hc,
		base:        base,
		auth:        authHeader(token),
		token:       token,
		pageSize:    pageSize,
		queries:     queries,
		partition:   src.Partition,
		sourceUID:   src.IntegrationSourceUID,
		obs:         cfg.Observer,
		now:         cfg.Now,
		sleep:       integration.Sleep,
	}
	if c.obs == nil {
		c.obs = integration.NopObserver{}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// parseEndpoint accepts the NetBox base URL, with or without a trailing
// slash or "/api".
func parseEndpoint(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("netbox: endpoint: missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL; say only what is wrong with it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("netbox: endpoint: not a URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("netbox: endpoint: scheme must be http or https")
	case u.Host == "":
		return nil, errors.New("netbox: endpoint: missing host")
	case u.User != nil:
		return nil, errors.New("netbox: endpoint: must not carry user information; the token goes in credentials.api_token")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("netbox: endpoint: must not carry a query or fragment")
	}
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/api")
	u.RawPath = ""
	return u, nil
}

// parseToken trims the token and tolerates a scheme word stored with it.
func parseToken(raw string) (string, error) {
	token := strings.TrimSpace(raw)
	for _, scheme := range []string{"Token ", "Bearer "} {
		if len(token) > len(scheme) && strings.EqualFold(token[:len(scheme)], scheme) {
			token = strings.TrimSpace(token[len(scheme):])
		}
	}
	if token == "" {
		return "", fmt.Errorf("netbox: credentials.%s: missing", CredentialAPIToken)
	}
	if strings.ContainsFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII }) {
		return "", fmt.Errorf("netbox: credentials.%s: contains spaces, control or non-ASCII characters", CredentialAPIToken)
	}
	return token, nil
}

// authHeader chooses the scheme from the token's form: NetBox 4.5+ v2
// tokens (nbt_<key>.<token>) are Bearer tokens, anything else is a v1 token.
func authHeader(token string) string {
	if strings.HasPrefix(token, "nbt_") {
		return "Bearer " + token
	}
	return "Token " + token
}

// parseQueries turns the source's queries into device list parameters. No
// query means one unfiltered pass.
func parseQueries(in []bundle.Query, pageSize int) ([]query, error) {
	if len(in) == 0 {
		in = []bundle.Query{{}}
	}
	out := make([]query, 0, len(in))
	for i, q := range in {
		values, err := url.ParseQuery(strings.TrimPrefix(strings.TrimSpace(q.Query), "?"))
		if err != nil {
			return nil, fmt.Errorf("netbox: queries[%d].query (label %q): not a NetBox filter query string: %w", i, q.Label, err)
		}
		// Paging is the client's; brief objects lack the fields it maps.
		for _, key := range []string{"limit", "offset", "start", "brief"} {
			values.Del(key)
		}
		values.Set("limit", strconv.Itoa(pageSize))
		if !values.Has("exclude") && !values.Has("fields") {
			// Only what update maps: a third of the bytes, and far less work
			// for NetBox, whose config_context rendering is the costliest.
			values.Set("fields", deviceFields)
		}
		name := q.Label
		if name == "" {
			name = q.Query
		}
		if name == "" {
			name = "(all devices)"
		}
		out = append(out, query{label: q.Label, name: strconv.Quote(name), values: values})
	}
	return out, nil
}

// Fetch streams every device the source's queries select to emit, one page
// of the device list at a time. A device that an earlier query (or page)
// already emitted is skipped. A nil error means every page of every query
// was fetched.
func (c *Client) Fetch(ctx context.Context, emit integration.Emit) error {
	return c.fetch(ctx, c.queries, emit)
}

// FetchChanged is Fetch over the devices NetBox updated at or after since:
// each query's last_updated__gte filter is set to it (a later one the query
// has is kept). Changes NetBox records on the device itself are seen (its
// status, site, role, name, which IPs are primary); an IP address or MAC
// edited in place on its own object leaves the device's last_updated as it
// was, and waits for the next full pass.
func (c *Client) FetchChanged(ctx context.Context, since time.Time, emit integration.Emit) error {
	queries := make([]query, len(c.queries))
	for i, q := range c.queries {
		q.values = maps.Clone(q.values)
		if own, err := time.Parse(time.RFC3339, q.values.Get(lastUpdatedFilter)); err != nil || own.Before(since) {
			q.values.Set(lastUpdatedFilter, since.UTC().Format(time.RFC3339))
		}
		queries[i] = q
	}
	return c.fetch(ctx, queries, emit)
}

func (c *Client) fetch(ctx context.Context, queries []query, emit integration.Emit) error {
	r := &run{c: c}
	for i := range queries {
		if err := r.query(ctx, &queries[i], emit); err != nil {
			return err
		}
	}
	return nil
}

// macSource is where a run finds MAC addresses.
type macSource int

const (
	macsUnknown     macSource = iota // not yet probed in this run
	macsFromObjects                  // /api/dcim/mac-addresses/ (NetBox 4.2+)
	macsFromIfaces                   // /api/dcim/interfaces/
)

// run is the state of one Fetch.
type run struct {
	c    *Client
	seen idSet
	macs macSource
}

// query pages through the device list for q.
func (r *run) query(ctx context.Context, q *query, emit integration.Emit) error {
	target := r.c.base.String() + devicesPath + "?" + q.values.Encode()
	for page := 1; target != ""; page++ {
		start := time.Now()
		p, err := getPage[nbDevice](ctx, r.c, target, r.c.pageSize, false)
		if err != nil {
			return fmt.Errorf("netbox: query %s, device page %d: %w", q.name, page, err)
		}
		r.c.obs.Page(len(p.results), time.Since(start))
		fresh := p.results[:0]
		for i := range p.results {
			if r.seen.add(p.results[i].ID) {
				fresh = append(fresh, p.results[i])
			}
		}
		if len(fresh) > 0 {
			macs, err := r.lookupMACs(ctx, fresh)
			if err != nil {
				return fmt.Errorf("netbox: query %s, MAC addresses of device page %d: %w", q.name, page, err)
			}
			updates := make([]results.DeviceUpdate, len(fresh))
			for i := range fresh {
				updates[i] = r.c.update(&fresh[i], macs[fresh[i].ID], q.label)
			}
			if err := emit(ctx, updates); err != nil {
				return fmt.Errorf("netbox: query %s, emitting device page %d: %w", q.name, page, err)
			}
		}
		if len(p.results) == 0 && p.next != nil && *p.next != "" {
			return fmt.Errorf("netbox: query %s, device page %d: an empty page links to a next page", q.name, page)
		}
		if target, err = r.c.follow(target, p.next); err != nil {
			return fmt.Errorf("netbox: query %s, after device page %d: %w", q.name, page, err)
		}
	}
	return nil
}

// follow returns the URL of the next page ("" after the last). NetBox's
// next links are absolute and built from the Host it saw, which behind a
// proxy may differ from the endpoint: a link to another origin is taken
// onto the endpoint's, so the token never goes anywhere else.
func (c *Client) follow(current string, next *string) (string, error) {
	if next == nil || strings.TrimSpace(*next) == "" {
		return "", nil
	}
	cur, err := url.Parse(current)
	if err != nil {
		return "", fmt.Errorf("parsing the current page's URL: %w", err)
	}
	ref, err := url.Parse(strings.TrimSpace(*next))
	if err != nil {
		return "", errors.New("the next link is not a URL")
	}
	u := cur.ResolveReference(ref)
	if u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		u.Scheme, u.Host = c.base.Scheme, c.base.Host
	}
	u.User, u.Fragment = nil, ""
	out := u.String()
	if out == current {
		return "", errors.New("the next link names the same page again")
	}
	return out, nil
}
