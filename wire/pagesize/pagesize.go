// Package pagesize is the one table of page sizes per integration type: how
// many rows one API page holds when a source sets none, and the most it may
// ask for. The API package documents and validates spec.pageSize by it (its
// CEL rules are checked against this table by api/v1alpha1's CRD tests), the
// gateway's bundle builder fills in the default, and each worker client
// (workers/integration/armis, netbox, faker) pages by it.
//
// It imports nothing, so the API types, the gateway and the worker can all
// depend on it.
package pagesize

import "slices"

// Min is the smallest page size any integration accepts.
const Min = 1

// Limits are one integration type's page sizes.
type Limits struct {
	// Default is the page size of a source that sets none.
	Default int32
	// Max is the largest page size the integration's API serves; the CRD
	// refuses larger ones and the clients cap to it.
	Max int32
}

// Resolve is the page size a source asking for requested gets: Default when
// requested is zero or negative (not set), at most Max.
func (l Limits) Resolve(requested int32) int32 {
	if requested <= 0 {
		return l.Default
	}
	return min(requested, l.Max)
}

// The integration types of the table, as spec.type and the bundle name them.
const (
	// Armis is the Armis API v1 search: pages of up to 5000 devices.
	Armis = "armis"
	// NetBox is the NetBox REST API, whose MAX_PAGE_SIZE defaults to 1000.
	NetBox = "netbox"
	// Faker is the synthetic inventory; its pages are emitted, not fetched.
	Faker = "faker"
)

// table holds the limits of every integration type. The defaults are what
// every source has had since spec.pageSize defaulted to 100 in the CRD.
var table = map[string]Limits{
	Armis:  {Default: 100, Max: 5000},
	NetBox: {Default: 100, Max: 1000},
	Faker:  {Default: 100, Max: 5000},
}

// For returns the limits of an integration type, and false for a type the
// table does not know.
func For(integrationType string) (Limits, bool) {
	l, ok := table[integrationType]
	return l, ok
}

// MustFor returns the limits of an integration type the table knows; it
// panics for any other, a programming error of the caller.
func MustFor(integrationType string) Limits {
	l, ok := table[integrationType]
	if !ok {
		panic("pagesize: no limits for integration type " + integrationType)
	}
	return l
}

// Types lists the integration types of the table, sorted.
func Types() []string {
	types := make([]string, 0, len(table))
	for t := range table {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// Largest is the largest Max of the table: the CRD's overall maximum.
func Largest() int32 {
	var m int32
	for _, l := range table {
		m = max(m, l.Max)
	}
	return m
}
