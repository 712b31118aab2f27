// Package integration is the contract between the worker's runner and the
// clients of the inventories it polls (armis, netbox, faker): a client
// streams the devices of one run page by page, so memory never grows with
// the inventory, and says whether every page was fetched.
//
// It also holds what the HTTP clients (armis, netbox) share against a
// hostile or misconfigured server: the redirect policy that keeps
// credentials within the endpoint's origin (CheckRedirect, HTTPClient),
// page decoding that streams items and refuses pages far longer than asked
// for (DecodeObject, DecodeList, PageItemLimit), and the short, clean
// excerpt an error may take from an answer's body (ErrorText). How their
// failed requests are classified and retried is in the httpretry package.
package integration

import (
	"context"
	"errors"
	"time"

	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
)

// Metadata keys every client sets on its device updates (DESIGN.md section 6).
const (
	MetaIntegrationType      = "integration_type"
	MetaIntegrationSourceUID = "integration_source_uid"
	MetaQueryLabel           = "query_label"
	MetaAllIPs               = "all_ips"
	MetaAllMACs              = "all_macs"
)

// Emit receives one page of devices. It may block (backpressure) and its
// error stops the run.
type Emit func(ctx context.Context, page []results.DeviceUpdate) error

// Client fetches one source's inventory.
type Client interface {
	// Fetch streams every device of a full inventory pass to emit, page by
	// page as they arrive. A nil error means every page of every query was
	// fetched (a full fetch, which allows retraction); an error means the
	// pass stopped or skipped pages, whatever was emitted before it.
	Fetch(ctx context.Context, emit Emit) error
}

// Incremental is a Client that can also fetch only the devices the
// inventory changed since an instant (Armis after:, NetBox
// last_updated__gte). The runner uses it between full passes: such a pass is
// never a full fetch, so it retracts nothing.
type Incremental interface {
	Client
	// FetchChanged streams the devices of every query that changed after
	// since, as Fetch does; a nil error means every page was fetched.
	FetchChanged(ctx context.Context, since time.Time, emit Emit) error
}

// Observer receives per-request facts for metrics; nil methods are fine to skip.
type Observer interface {
	// Page is called for every page fetched, with its device count and duration.
	Page(devices int, took time.Duration)
	// Failure is called for every failed request (kind: auth, rate_limited,
	// server, network, decode; httpretry.KindAuth and the like).
	Failure(kind string)
}

// NopObserver observes nothing.
type NopObserver struct{}

// Page does nothing.
func (NopObserver) Page(int, time.Duration) {}

// Failure does nothing.
func (NopObserver) Failure(string) {}

// ErrCredentials is wrapped by clients when the inventory refuses the credentials.
var ErrCredentials = errors.New("credentials refused")

// Config is what every client is built from.
type Config struct {
	// Source is the source as the gateway's bundle carries it (endpoint,
	// credentials, queries, page size, partition, uid).
	Source bundle.Source
	// Observer receives metrics facts; nil means NopObserver.
	Observer Observer
	// Now is the clock for timestamps and token expiry; nil means time.Now.
	Now func() time.Time
}
