// Package netbox is the sync worker's client of the NetBox REST API v4
// (/work/shared/REFERENCE.md). For each filter query of a source it pages
// through /api/dcim/devices/ and then /api/virtualization/virtual-machines/
// (unless the source excludes VMs), looks up the interfaces of each page's
// objects (their primary MACs, NetBox 4.2+, and every other MAC) and the IP
// addresses assigned to those interfaces, and streams the page to the
// runner as results.DeviceUpdates, so memory stays flat whatever the size
// of the inventory.
//
// Paging asks for NetBox 4.6's cursor (start=, ordered by id), which no
// deletion or rename can make skip an object; an older NetBox ignores it
// and pages by limit/offset in name order, where a deletion or rename
// during the pass can shift an object between pages unseen: such a pass
// (the list's count changed under it) is never a full fetch. Next links are
// rebuilt on the endpoint's base URL, so a path prefix of a proxy in front
// of NetBox is kept. An object deleted between its page and the lookup of
// its interfaces is left out.
//
// A NetBox status maps to availability by a documented table that a source
// may override (StatusAvailability); decommissioning objects are not
// reported, so a full pass retracts them. The seen time is the run's, and
// last_updated stays in metadata.
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
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/pagesize"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/httpretry"
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

// MetaVMID is the metadata key of NetBox's numeric virtual machine id, a
// VM's strong identifier (VM and device ids are separate sequences).
const MetaVMID = "netbox_vm_id"

// Availability is what a NetBox status says about an object's
// availability.
type Availability string

// Availabilities.
const (
	// AvailabilityAvailable reports the object available.
	AvailabilityAvailable Availability = "Available"
	// AvailabilityUnavailable reports the object unavailable.
	AvailabilityUnavailable Availability = "Unavailable"
	// AvailabilityUnknown reports the object without saying anything about
	// its availability (a new device counts as available).
	AvailabilityUnknown Availability = "Unknown"
	// AvailabilityRetract does not report the object, so that a full pass
	// retracts it.
	AvailabilityRetract Availability = "Retract"
)

// DefaultStatusAvailability is the availability of each NetBox status
// (devices and VMs) unless the source overrides it; a status not listed
// (a custom one) is AvailabilityUnknown.
var DefaultStatusAvailability = map[string]Availability{
	"active":          AvailabilityAvailable,
	"offline":         AvailabilityUnavailable,
	"planned":         AvailabilityUnavailable,
	"staged":          AvailabilityUnknown,
	"failed":          AvailabilityUnavailable,
	"inventory":       AvailabilityUnavailable,
	"decommissioning": AvailabilityRetract,
}

// pageLimits are the list page sizes (wire/pagesize): the default when the
// source's page size is zero, and NetBox's MAX_PAGE_SIZE default, which caps
// the source's page size and is the page size of the interface and IP
// address lookups.
var pageLimits = pagesize.MustFor(IntegrationType)

// Retry defaults for the Client's exported fields.
const (
	// DefaultMinBackoff is the first retry delay.
	DefaultMinBackoff = httpretry.DefaultMinBackoff
	// DefaultMaxBackoff caps the exponential retry delays (a longer
	// Retry-After is honoured).
	DefaultMaxBackoff = httpretry.DefaultMaxBackoff
	// DefaultMaxAttempts bounds the attempts of one request.
	DefaultMaxAttempts = httpretry.DefaultAttempts
)

// API paths, relative to the endpoint.
const (
	devicesPath         = "/api/dcim/devices/"
	interfacesPath      = "/api/dcim/interfaces/"
	virtualMachinesPath = "/api/virtualization/virtual-machines/"
	vmInterfacesPath    = "/api/virtualization/interfaces/"
	ipAddressesPath     = "/api/ipam/ip-addresses/"
	// lastUpdatedFilter selects objects updated at or after an instant.
	lastUpdatedFilter = "last_updated__gte"
)

// The fields= of each list (NetBox 4.0+; names a NetBox version lacks are
// ignored): only what the client decodes. NetBox computes config contexts
// whatever fields= says, so lists also send exclude=config_context.
const (
	objectFields = "id,name,status,site,role,tenant,platform,serial,tags,primary_ip4,primary_ip6,last_updated"
	deviceFields = objectFields + ",device_type,virtual_chassis,vc_position"
	ipFields     = "id,address,assigned_object"
)

// kind is one list of objects that become devices: NetBox's devices or its
// virtual machines.
type kind struct {
	name, path, fields string
	// idKey is the metadata key of the object's id.
	idKey string
	// interfacePath lists the object's interfaces, filtered by ownerParam,
	// which also filters IP addresses.
	interfacePath, interfaceFields, ownerParam string
}

var (
	deviceKind = kind{name: "device", path: devicesPath, fields: deviceFields, idKey: MetaDeviceID,
		interfacePath: interfacesPath, interfaceFields: "id,device,mac_address,primary_mac_address,mac_addresses",
		ownerParam: "device_id"}
	vmKind = kind{name: "virtual machine", path: virtualMachinesPath, fields: objectFields, idKey: MetaVMID,
		interfacePath: vmInterfacesPath, interfaceFields: "id,virtual_machine,mac_address,primary_mac_address,mac_addresses",
		ownerParam: "virtual_machine_id"}
)

// owner is the id of the kind's owner among a nested device and VM.
func (k *kind) owner(device, vm *nbOwnerRef) int64 {
	ref := device
	if k.ownerParam == vmKind.ownerParam {
		ref = vm
	}
	if ref == nil {
		return 0
	}
	return ref.ID
}

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
	// honoured (up to httpretry.MaxRetryAfter). Zero means DefaultMaxBackoff.
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
	kinds     []*kind
	status    map[string]Availability
	partition string
	sourceUID string
	obs       integration.Observer
	now       func() time.Time
	// sleep waits between attempts; tests replace it to record delays.
	sleep func(ctx context.Context, d time.Duration) error
}

// query is one pass over the device list, and one over the VM list.
type query struct {
	label  string     // query_label metadata; empty for the unfiltered pass
	name   string     // how errors name the query
	values url.Values // the list's query parameters, limit included
	fields bool       // the client chose fields= (per kind)
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
	pageSize := int(pageLimits.Resolve(src.PageSize))
	queries, err := parseQueries(src.Queries, pageSize)
	if err != nil {
		return nil, err
	}
	status, kinds, err := parseSettings(src.NetBox)
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
		kinds:       kinds,
		status:      status,
		partition:   src.Partition,
		sourceUID:   src.IntegrationSourceUID,
		obs:         cfg.Observer,
		now:         cfg.Now,
		sleep:       httpretry.Sleep,
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

// parseSettings reads the source's NetBox settings: the status table with
// the source's overrides, and the kinds of objects to fetch.
func parseSettings(nb *bundle.NetBox) (map[string]Availability, []*kind, error) {
	status := maps.Clone(DefaultStatusAvailability)
	kinds := []*kind{&deviceKind, &vmKind}
	if nb == nil {
		return status, kinds, nil
	}
	if nb.ExcludeVirtualMachines {
		kinds = kinds[:1]
	}
	for value, raw := range nb.StatusAvailability {
		i := slices.IndexFunc([]Availability{AvailabilityAvailable, AvailabilityUnavailable, AvailabilityUnknown, AvailabilityRetract},
			func(a Availability) bool { return strings.EqualFold(string(a), raw) })
		if i < 0 {
			return nil, nil, fmt.Errorf("netbox: netbox.statusAvailability[%q]: %q is not Available, Unavailable, Unknown or Retract", value, raw)
		}
		status[strings.ToLower(strings.TrimSpace(value))] = []Availability{AvailabilityAvailable, AvailabilityUnavailable, AvailabilityUnknown, AvailabilityRetract}[i]
	}
	return status, kinds, nil
}

// availability is what status says about an object.
func (c *Client) availability(status string) Availability {
	if a, ok := c.status[status]; ok {
		return a
	}
	return AvailabilityUnknown
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
		// Cursor paging on NetBox 4.6+; an older one ignores start.
		values.Set("start", "0")
		// fields= keeps only what update maps (a third of the bytes), and
		// exclude=config_context spares NetBox rendering config contexts,
		// its costliest work, which fields= alone does not.
		fields := !values.Has("fields")
		exclude := values["exclude"]
		if !slices.ContainsFunc(exclude, func(e string) bool {
			return slices.Contains(strings.Split(e, ","), "config_context")
		}) {
			values.Add("exclude", "config_context")
		}
		name := q.Label
		if name == "" {
			name = q.Query
		}
		if name == "" {
			name = "(all devices)"
		}
		out = append(out, query{label: q.Label, name: strconv.Quote(name), values: values, fields: fields})
	}
	return out, nil
}

// Fetch streams every device (then every VM, unless excluded) the source's
// queries select to emit, one list page at a time. An object that an
// earlier query (or page) already emitted is skipped. A nil error means
// every page of every query was fetched and no limit/offset list changed its
// count meanwhile; an error wrapping errNotFull means the pages were all
// fetched but the pass may have missed objects.
func (c *Client) Fetch(ctx context.Context, emit integration.Emit) error {
	return c.fetch(ctx, c.queries, emit)
}

// FetchChanged is Fetch over the devices and VMs NetBox updated at or after
// since: each query's last_updated__gte filter is set to it (a later one the
// query has is kept). Changes NetBox records on the object itself are seen
// (its status, site, role, name, which IPs are primary); an IP address or
// MAC edited in place on its own object leaves the device's last_updated as
// it was, and waits for the next full pass. A device that became
// decommissioning is retracted by the next full pass, not by this one.
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
	r := &run{c: c, seen: c.now().UTC().Format(time.RFC3339Nano)}
	var changed []string
	for _, k := range c.kinds {
		for i := range queries {
			moved, err := r.query(ctx, k, &queries[i], emit)
			if err != nil {
				return err
			}
			if moved != "" {
				changed = append(changed, moved)
			}
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("netbox: %w: %s", errNotFull, strings.Join(changed, "; "))
	}
	return nil
}

// errNotFull ends a pass that fetched every page but may have missed
// objects: limit/offset pages (NetBox before 4.6) of a list whose count
// changed during the pass, where a deletion or rename shifts objects across
// page boundaries.
var errNotFull = errors.New("the inventory changed during the pass, so it may have skipped objects and is not a full fetch")

// run is the state of one Fetch.
type run struct {
	c *Client
	// seen is the run's time, every update's timestamp.
	seen string
	// emitted are the ids emitted so far, per kind.
	emitted map[*kind]*idSet
}

// query pages through k's list for q. It returns a description of the
// count's change when the list's count changed during offset paging.
func (r *run) query(ctx context.Context, k *kind, q *query, emit integration.Emit) (string, error) {
	if r.emitted == nil {
		r.emitted = map[*kind]*idSet{}
	}
	seen := r.emitted[k]
	if seen == nil {
		seen = &idSet{}
		r.emitted[k] = seen
	}
	values := q.values
	if q.fields {
		values = maps.Clone(values)
		values.Set("fields", k.fields)
	}
	target := r.c.base.String() + k.path + "?" + values.Encode()
	var first *int64
	moved := ""
	for page := 1; target != ""; page++ {
		start := time.Now()
		p, err := getPage[nbObject](ctx, r.c, target, r.c.pageSize)
		if err != nil {
			return "", fmt.Errorf("netbox: query %s, %s page %d: %w", q.name, k.name, page, err)
		}
		r.c.obs.Page(len(p.results), time.Since(start))
		switch {
		case page == 1:
			first = p.count
		case first != nil && p.count != nil && *p.count != *first && moved == "":
			moved = fmt.Sprintf("query %s: the %s count went from %d to %d", q.name, k.name, *first, *p.count)
		}
		fresh := p.results[:0]
		for i := range p.results {
			if seen.add(p.results[i].ID) {
				fresh = append(fresh, p.results[i])
			}
		}
		if len(fresh) > 0 {
			found, err := r.lookup(ctx, k, fresh)
			if err != nil {
				return "", fmt.Errorf("netbox: query %s, interfaces and addresses of %s page %d: %w", q.name, k.name, page, err)
			}
			updates := make([]results.DeviceUpdate, 0, len(fresh))
			for i := range fresh {
				o, ok := found[fresh[i].ID]
				if !ok {
					continue // deleted since the page was read
				}
				if u, ok := r.update(k, &fresh[i], o, q.label); ok {
					updates = append(updates, u)
				}
			}
			if len(updates) > 0 {
				if err := emit(ctx, updates); err != nil {
					return "", fmt.Errorf("netbox: query %s, emitting %s page %d: %w", q.name, k.name, page, err)
				}
			}
		}
		if len(p.results) == 0 && p.next != nil && *p.next != "" {
			return "", fmt.Errorf("netbox: query %s, %s page %d: an empty page links to a next page", q.name, k.name, page)
		}
		if target, err = r.c.follow(k.path, target, p.next); err != nil {
			return "", fmt.Errorf("netbox: query %s, after %s page %d: %w", q.name, k.name, page, err)
		}
	}
	return moved, nil
}

// follow returns the URL of the next page of the list at path ("" after
// the last). NetBox builds next links from the Host and path it saw, which
// behind a proxy may be another origin or lack the proxy's path prefix: the
// link's query is kept, on the endpoint's base URL and the list's path, so
// the token never goes anywhere else and the prefix is never lost.
func (c *Client) follow(path, current string, next *string) (string, error) {
	if next == nil || strings.TrimSpace(*next) == "" {
		return "", nil
	}
	ref, err := url.Parse(strings.TrimSpace(*next))
	if err != nil {
		return "", errors.New("the next link is not a URL")
	}
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath, u.RawQuery, u.Fragment = "", ref.RawQuery, ""
	out := u.String()
	if out == current {
		return "", errors.New("the next link names the same page again")
	}
	return out, nil
}
