package armisemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault"
	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// API paths the emulator serves.
const (
	// TokenPath exchanges the secret key for an access token (POST).
	TokenPath = "/api/v1/access_token/"
	// SearchPath is the paginated AQL search (GET).
	SearchPath = "/api/v1/search/"
)

// Limits and defaults of the search endpoint.
const (
	// DefaultPageLength is the page size used when a search gives no length.
	DefaultPageLength = 100
	// MaxPageLength is the largest length a search may ask for.
	MaxPageLength = 5000
	// MaxDevices is the largest inventory the address plan keeps unique.
	MaxDevices = 5_000_000
	// DefaultSecretKey is the secret key accepted when Options.SecretKey is empty.
	DefaultSecretKey = "armis-emulator-secret-key"
	// DefaultTokenTTL is how long an access token lasts when Options.TokenTTL is zero.
	DefaultTokenTTL = time.Hour
)

// DefaultEpoch returns the instant the inventory is observed at when
// Options.Epoch is zero, 2026-01-01T00:00:00Z: fixed, so that the same seed
// gives the same bytes on any day.
func DefaultEpoch() time.Time {
	return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
}

// Options configure a Server. The zero value is usable: an empty inventory,
// DefaultSecretKey, tokens lasting DefaultTokenTTL on the wall clock.
type Options struct {
	// Seed selects the inventory; the same seed always gives the same devices.
	Seed uint64
	// Devices is the inventory size N (ids 1..N), at most MaxDevices.
	Devices int
	// SecretKey is the secret the token endpoint accepts.
	SecretKey string
	// TokenTTL is how long an issued access token stays valid.
	TokenTTL time.Duration
	// Clock tells the time for token expiry; nil means time.Now. Inject one
	// to test expiry without waiting.
	Clock func() time.Time
	// Epoch is the instant the inventory is observed at: lastSeen values lie
	// in the 30 days before it and timeFrame counts back from it.
	Epoch time.Time
	// Overlap makes a share of the devices ones that other generators given
	// the same Overlap (the Faker, the NetBox emulator) report too: such a
	// device has the shared MAC, IPv4, IPv6 and name of
	// population.Overlap.Device. The zero value shares nothing.
	Overlap population.Overlap
	// RedundancyPairEvery, when 2 or more, makes the last two ordinals of
	// every RedundancyPairEvery (i%RedundancyPairEvery >=
	// RedundancyPairEvery-2, unless shared by Overlap) the two routers of
	// first-hop redundancy pair p = i/RedundancyPairEvery: both list, after
	// their own MAC, the virtual MAC of group p%255+1 (HSRP
	// 00:00:0c:07:ac:gg for Cisco, VRRP 00:00:5e:00:01:vr for others; group
	// numbers repeat across sites, and so across inventories). Zero means no
	// pairs.
	RedundancyPairEvery int
	// BadSecretStatus is the status a refused secret key gets from the token
	// endpoint; zero means 400, as Armis answers.
	BadSecretStatus int
}

// Server is an Armis API emulator. It is an http.Handler; Start serves it on
// a loopback port. All methods are safe for concurrent use.
type Server struct {
	inv    inventory
	secret string
	// badSecret is the status of a refused token exchange.
	badSecret int
	tokens    *tokenStore
	faults    *apifault.Injector[int] // pages keyed by the search's from
	stats     counters
	results   *ordinals.Cache
	host      *apifault.Host
}

// New returns a Server for opts. It panics when opts.Devices is negative or
// above MaxDevices, as a test helper would on a programming error.
func New(opts Options) *Server {
	if opts.Devices < 0 || opts.Devices > MaxDevices {
		panic(fmt.Sprintf("armisemu: Devices must be within 0..%d, got %d", MaxDevices, opts.Devices))
	}
	if opts.SecretKey == "" {
		opts.SecretKey = DefaultSecretKey
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Epoch.IsZero() {
		opts.Epoch = DefaultEpoch()
	}
	if opts.BadSecretStatus == 0 {
		opts.BadSecretStatus = http.StatusBadRequest
	}
	s := &Server{
		inv: inventory{seed: opts.Seed, n: opts.Devices, epoch: opts.Epoch.UTC(), overlap: opts.Overlap,
			pairEvery: opts.RedundancyPairEvery},
		secret:    opts.SecretKey,
		badSecret: opts.BadSecretStatus,
		tokens:    newTokenStore(opts.Seed, opts.TokenTTL, opts.Clock),
		faults:    apifault.NewInjector[int](armisAPI),
		results:   ordinals.NewCache(8),
	}
	s.host = apifault.NewHost("armisemu", s)
	return s
}

// SecretKey returns the secret key the token endpoint accepts.
func (s *Server) SecretKey() string { return s.secret }

// Start serves the emulator over plain HTTP on a loopback port and returns
// its base URL (the Armis "endpoint"). It panics if the server already runs.
func (s *Server) Start() string { return s.host.Start() }

// StartTLS is Start over HTTPS with httptest's self-signed certificate; use
// Client for an http.Client that trusts it.
func (s *Server) StartTLS() string { return s.host.StartTLS() }

// URL returns the base URL of the started server, or "" before Start.
func (s *Server) URL() string { return s.host.URL() }

// Client returns an http.Client for the started server (trusting its
// certificate after StartTLS), or http.DefaultClient before Start.
func (s *Server) Client() *http.Client { return s.host.Client() }

// Close stops the started server and waits for its requests to finish. It is
// safe to call more than once, and before Start.
func (s *Server) Close() { s.host.Close() }

// ServeHTTP answers one API request, applying the injected faults first as a
// proxy or gateway in front of Armis would.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.faults.Admit(w, r) {
		return
	}
	switch r.URL.Path {
	case TokenPath:
		s.serveToken(w, r)
	case SearchPath:
		s.serveSearch(w, r)
	default:
		s.stats.notFound.Add(1)
		writeError(w, http.StatusNotFound, "Not Found")
	}
}

// errorBody is the shape of every Armis error answer.
type errorBody struct {
	Message string `json:"message"`
	Success bool   `json:"success"`
}

// envelope is the shape of every Armis success answer.
type envelope struct {
	Data    any  `json:"data"`
	Success bool `json:"success"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(errorBody{Message: msg})
	apifault.WriteJSON(w, status, body)
}
