package netboxemu

import (
	"sync/atomic"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault"
)

// PageFault is how a broken list page fails.
type PageFault = apifault.PageFault

const (
	// PageServerError answers the page with 500 and Django's error page.
	PageServerError = apifault.PageServerError
	// PageMalformed answers the page with 200 and a JSON body cut in half.
	PageMalformed = apifault.PageMalformed
)

// pageKey names the page of a list that starts at a row.
type pageKey struct {
	kind Kind
	row  int
}

// netboxAPI is how the fault injector answers for NetBox: injected 429s and
// 5xx and broken pages get the HTML of the proxy or Django in front, a page
// that cannot be rendered gets {"detail"}.
var netboxAPI = apifault.API{Name: "netboxemu", Reject: writeProxyError, Error: writeDetail}

// SetLatency adds d to every later request (zero removes it). A request whose
// client gives up during the wait gets no answer.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// RateLimitNext answers the next k requests with 429 and a Retry-After
// header of retryAfter rounded up to whole seconds, as a proxy in front of
// NetBox would. It replaces any throttling still pending.
func (s *Server) RateLimitNext(k int, retryAfter time.Duration) {
	s.faults.RateLimitNext(k, retryAfter)
}

// FailNext answers the next k requests (after pending 429s) with status,
// which must be a 5xx code; 503 is what NetBox answers in maintenance. It
// replaces any burst still pending.
func (s *Server) FailNext(k, status int) { s.faults.FailNext(k, status) }

// BreakPage makes the page of kind's list that starts at row fail with
// fault, whatever the filters, until RepairPage or ClearFaults. With
// limit/offset paging the row is the offset; with cursor paging it is the
// position of the page's first result in the list.
func (s *Server) BreakPage(kind Kind, row int, fault PageFault) {
	s.faults.BreakPage(pageKey{kind, row}, fault)
}

// RepairPage undoes BreakPage for kind and row.
func (s *Server) RepairPage(kind Kind, row int) { s.faults.RepairPage(pageKey{kind, row}) }

// ClearFaults removes latency, pending 429s and 5xx bursts, broken pages and a
// pending token expiry. Expired tokens stay expired until RenewTokens.
func (s *Server) ClearFaults() {
	s.faults.Clear()
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
	// IPAddressPages counts IP address pages answered whole.
	IPAddressPages int64
	// VirtualMachinePages counts virtual machine pages answered whole.
	VirtualMachinePages int64
	// VMInterfacePages counts VM interface pages answered whole.
	VMInterfacePages int64
	// ConfigContexts counts the devices and VMs whose config context NetBox
	// would have rendered: every row of a page that neither is brief nor
	// excludes config_context (fields= does not spare it). Not a request
	// counter.
	ConfigContexts int64
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

// counters are the live, atomically updated values behind Stats that the
// fault injector does not keep.
type counters struct {
	devicePages, interfacePages, macPages, forbidden atomic.Int64
	ipPages, vmPages, vmIfacePages                   atomic.Int64
	badRequests, redirects, notFound                 atomic.Int64
	configContexts                                   atomic.Int64
}

func (c *counters) pages(k Kind) *atomic.Int64 {
	switch k {
	case KindInterfaces:
		return &c.interfacePages
	case KindMACAddresses:
		return &c.macPages
	case KindIPAddresses:
		return &c.ipPages
	case KindVirtualMachines:
		return &c.vmPages
	case KindVMInterfaces:
		return &c.vmIfacePages
	default:
		return &c.devicePages
	}
}

// Stats returns the counters. Each value is read atomically; the snapshot as
// a whole is not, which only matters while requests are in flight.
func (s *Server) Stats() Stats {
	c, f := &s.stats, s.faults.Counts()
	return Stats{
		Requests:            f.Requests,
		DevicePages:         c.devicePages.Load(),
		InterfacePages:      c.interfacePages.Load(),
		MACAddressPages:     c.macPages.Load(),
		IPAddressPages:      c.ipPages.Load(),
		VirtualMachinePages: c.vmPages.Load(),
		VMInterfacePages:    c.vmIfacePages.Load(),
		ConfigContexts:      c.configContexts.Load(),
		Forbidden:           c.forbidden.Load(),
		RateLimited:         f.RateLimited,
		ServerErrors:        f.ServerErrors,
		MalformedPages:      f.MalformedPages,
		BadRequests:         c.badRequests.Load(),
		Redirects:           c.redirects.Load(),
		NotFound:            c.notFound.Load(),
	}
}
