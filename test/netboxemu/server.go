package netboxemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault"
	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// API paths the emulator serves.
const (
	// DevicesPath lists devices.
	DevicesPath = "/api/dcim/devices/"
	// InterfacesPath lists interfaces.
	InterfacesPath = "/api/dcim/interfaces/"
	// MACAddressesPath lists MAC addresses (NetBox 4.2+).
	MACAddressesPath = "/api/dcim/mac-addresses/"
	// IPAddressesPath lists IP addresses.
	IPAddressesPath = "/api/ipam/ip-addresses/"
	// VirtualMachinesPath lists virtual machines.
	VirtualMachinesPath = "/api/virtualization/virtual-machines/"
	// VMInterfacesPath lists the interfaces of virtual machines.
	VMInterfacesPath = "/api/virtualization/interfaces/"
)

// Limits and defaults.
const (
	// DefaultPageSize is NetBox's PAGINATE_COUNT default.
	DefaultPageSize = 50
	// MaxPageSize is NetBox's MAX_PAGE_SIZE default.
	MaxPageSize = 1000
	// MaxDevices is the largest inventory the address plan keeps unique.
	MaxDevices = 10_000_000
	// DefaultInterfacesPerDevice is used when Options.InterfacesPerDevice is zero.
	DefaultInterfacesPerDevice = 3
	// MaxInterfacesPerDevice bounds Options.InterfacesPerDevice.
	MaxInterfacesPerDevice = 64
)

// DefaultEpoch returns the instant the inventory is observed at when
// Options.Epoch is zero, 2026-01-01T00:00:00Z: fixed, so that the same seed
// gives the same bytes on any day.
func DefaultEpoch() time.Time {
	return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
}

// Options configure a Server. The zero value is usable: an empty inventory
// and tokens derived from seed 0.
type Options struct {
	// Seed selects the inventory and the default tokens.
	Seed uint64
	// Devices is the inventory size N (ids 1..N), at most MaxDevices.
	Devices int
	// InterfacesPerDevice is how many interfaces each device has, 1..64;
	// zero means DefaultInterfacesPerDevice.
	InterfacesPerDevice int
	// V1Token is the accepted v1 token, 40 hex digits; empty derives one
	// from Seed.
	V1Token string
	// V2Token is the accepted v2 token in the form nbt_<key>.<token>; empty
	// derives one from Seed.
	V2Token string
	// DisableV1 refuses v1 tokens ("Invalid v1 token").
	DisableV1 bool
	// DisableV2 makes the server behave like NetBox before 4.5: a Bearer
	// header is no credentials at all.
	DisableV2 bool
	// Epoch is the instant the inventory is observed at: created and
	// last_updated lie in the three years before it.
	Epoch time.Time
	// VirtualMachines is the number of virtual machines (ids 1..V), at most
	// MaxVirtualMachines.
	VirtualMachines int
	// Overlap makes a share of the devices ones that every other generator
	// given the same overlap reports too (the Faker, the Armis emulator):
	// device ordinal i with Overlap.Shared(i) has the shared device's name,
	// its MAC on eth0 and its IPv4 and IPv6 addresses as primary IPs. The
	// zero value shares nothing.
	Overlap population.Overlap
	// PathPrefix serves the API under a path such as "/netbox", as behind a
	// reverse proxy that strips it before NetBox sees the request: links in
	// answers (next, previous, url) leave the prefix out, as NetBox without
	// BASE_PATH writes them. Requests without the prefix get 404.
	PathPrefix string
	// NoCursor behaves like NetBox before 4.6: start= is ignored, so every
	// list pages by limit/offset.
	NoCursor bool
}

// Server is a NetBox API emulator. It is an http.Handler; Start serves it on
// a loopback port. All methods are safe for concurrent use.
type Server struct {
	inv      inventory
	prefix   string
	noCursor bool
	auth     *authenticator
	faults   *apifault.Injector[pageKey]
	stats    counters
	results  *ordinals.Cache
	refs     refCache
	host     *apifault.Host
}

// New returns a Server for opts. It panics on options a test could not mean
// (a size out of range, a malformed token), as a test helper would.
func New(opts Options) *Server {
	if opts.Devices < 0 || opts.Devices > MaxDevices {
		panic(fmt.Sprintf("netboxemu: Devices must be within 0..%d, got %d", MaxDevices, opts.Devices))
	}
	if opts.InterfacesPerDevice == 0 {
		opts.InterfacesPerDevice = DefaultInterfacesPerDevice
	}
	if opts.InterfacesPerDevice < 1 || opts.InterfacesPerDevice > MaxInterfacesPerDevice {
		panic(fmt.Sprintf("netboxemu: InterfacesPerDevice must be within 1..%d, got %d", MaxInterfacesPerDevice, opts.InterfacesPerDevice))
	}
	if opts.Epoch.IsZero() {
		opts.Epoch = DefaultEpoch()
	}
	if opts.VirtualMachines < 0 || opts.VirtualMachines > MaxVirtualMachines {
		panic(fmt.Sprintf("netboxemu: VirtualMachines must be within 0..%d, got %d", MaxVirtualMachines, opts.VirtualMachines))
	}
	if p := opts.PathPrefix; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/")) {
		panic(fmt.Sprintf("netboxemu: PathPrefix %q must start with a slash and not end with one", p))
	}
	auth, err := newAuthenticator(opts)
	if err != nil {
		panic(fmt.Sprintf("netboxemu: %v", err))
	}
	s := &Server{
		inv: inventory{seed: opts.Seed, n: opts.Devices, ifs: opts.InterfacesPerDevice, vms: opts.VirtualMachines,
			epoch: opts.Epoch.UTC(), overlap: opts.Overlap,
			macs: macPlan{off: uint32(ordinals.Mix(opts.Seed, 0, 0x6d6163)) & low24}, mut: &mutations{}},
		prefix:   opts.PathPrefix,
		noCursor: opts.NoCursor,
		auth:     auth,
		faults:   apifault.NewInjector[pageKey](netboxAPI),
		results:  ordinals.NewCache(8),
	}
	s.host = apifault.NewHost("netboxemu", s)
	return s
}

// Start serves the emulator over plain HTTP on a loopback port and returns
// its base URL. It panics if the server already runs.
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

// ServeHTTP answers one API request. Injected 429s and 5xx come first, as
// from a proxy in front of NetBox; then the missing-slash redirect, as
// Django's CommonMiddleware answers it before any view; then authentication.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.faults.Admit(w, r) {
		return
	}
	if s.prefix != "" {
		// The proxy in front strips its prefix; NetBox never sees it.
		rest, ok := strings.CutPrefix(r.URL.Path, s.prefix)
		if !ok || !strings.HasPrefix(rest, "/") {
			s.stats.notFound.Add(1)
			writeDetail(w, http.StatusNotFound, "Not found.")
			return
		}
		r2 := *r
		u := *r.URL
		u.Path, u.RawPath = rest, ""
		r2.URL = &u
		r = &r2
	}
	kind, known := kindOfPath(r.URL.Path)
	if !known {
		if _, ok := kindOfPath(r.URL.Path + "/"); ok {
			s.stats.redirects.Add(1)
			target := r.URL.Path + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
		}
		s.stats.notFound.Add(1)
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	if detail, ok := s.auth.authenticate(r.Header.Get("Authorization")); !ok {
		s.stats.forbidden.Add(1)
		writeDetail(w, http.StatusForbidden, detail)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.stats.notFound.Add(1)
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		writeDetail(w, http.StatusMethodNotAllowed, fmt.Sprintf("Method \"%s\" not allowed.", r.Method))
		return
	}
	s.serveList(w, r, kind)
}

// Kind names a list endpoint, for BreakPage and Stats.
type Kind string

// The list endpoints.
const (
	// KindDevices is /api/dcim/devices/.
	KindDevices Kind = "devices"
	// KindInterfaces is /api/dcim/interfaces/.
	KindInterfaces Kind = "interfaces"
	// KindMACAddresses is /api/dcim/mac-addresses/.
	KindMACAddresses Kind = "mac-addresses"
	// KindIPAddresses is /api/ipam/ip-addresses/.
	KindIPAddresses Kind = "ip-addresses"
	// KindVirtualMachines is /api/virtualization/virtual-machines/.
	KindVirtualMachines Kind = "virtual-machines"
	// KindVMInterfaces is /api/virtualization/interfaces/.
	KindVMInterfaces Kind = "vm-interfaces"
)

func kindOfPath(p string) (Kind, bool) {
	switch p {
	case DevicesPath:
		return KindDevices, true
	case InterfacesPath:
		return KindInterfaces, true
	case MACAddressesPath:
		return KindMACAddresses, true
	case IPAddressesPath:
		return KindIPAddresses, true
	case VirtualMachinesPath:
		return KindVirtualMachines, true
	case VMInterfacesPath:
		return KindVMInterfaces, true
	}
	return "", false
}

// writeDetail writes NetBox's (Django REST framework's) error shape.
func writeDetail(w http.ResponseWriter, status int, detail string) {
	body, _ := json.Marshal(map[string]string{"detail": detail})
	apifault.WriteJSON(w, status, body)
}

// writeProxyError writes what a proxy or Django puts in a 429 or 5xx: HTML,
// not JSON, so clients must not expect a detail.
func writeProxyError(w http.ResponseWriter, status int) {
	body := "<h1>Server Error (500)</h1>"
	if status != http.StatusInternalServerError {
		text := strconv.Itoa(status) + " " + http.StatusText(status)
		body = "<html>\r\n<head><title>" + text + "</title></head>\r\n<body>\r\n<center><h1>" + text +
			"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	}
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = strings.NewReader(body).WriteTo(w)
}
