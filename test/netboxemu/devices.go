package netboxemu

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// deviceFilter is a parsed device filter set. Masks have bit i set for
// catalog entry i; a zero mask with its flag set matches nothing.
type deviceFilter struct {
	key string // canonical form, the selection cache key

	sites, roles, statuses, tenants    uint64
	bySite, byRole, byStatus, byTenant bool
	allTags                            uint8
	hasPrimary                         *bool
	q                                  string
	names                              []string
	ids                                []int
	criticality                        uint64
	byCriticality                      bool
	monitored                          *bool
	owners                             []string
	updatedSince                       time.Time
	byUpdated                          bool
}

// deviceFilterParams are the query parameters deviceFilter reads.
var deviceFilterParams = []string{
	"site", "site_id", "role", "role_id", "status", "tenant", "tag", "has_primary_ip", "q",
	"name", "id", "cf_criticality", "cf_monitored", "cf_asset_owner", "last_updated__gte",
}

func parseDeviceFilter(q url.Values, errs validationErrors) deviceFilter {
	var f deviceFilter
	canon := url.Values{}
	for _, p := range deviceFilterParams {
		if vals, ok := q[p]; ok {
			canon[p] = slices.Sorted(slices.Values(vals))
		}
	}
	f.key = canon.Encode()

	f.sites, f.bySite = slugMask(q, "site", sites, func(x named) string { return x.slug }, errs)
	if m, ok := idMask(q, "site_id", len(sites), errs); ok {
		f.sites, f.bySite = orMask(f.sites, f.bySite, m)
	}
	f.roles, f.byRole = slugMask(q, "role", roles, func(x role) string { return x.slug }, errs)
	if m, ok := idMask(q, "role_id", len(roles), errs); ok {
		f.roles, f.byRole = orMask(f.roles, f.byRole, m)
	}
	f.statuses, f.byStatus = slugMask(q, "status", statuses, func(x status) string { return x.value }, errs)
	f.tenants, f.byTenant = slugMask(q, "tenant", tenants, func(x named) string { return x.slug }, errs)
	tagMask, _ := slugMask(q, "tag", tags, func(x tag) string { return x.slug }, errs)
	f.allTags = uint8(tagMask)
	f.criticality, f.byCriticality = slugMask(q, "cf_criticality", criticalities, func(x string) string { return x }, errs)
	f.hasPrimary = boolParam(q, "has_primary_ip", errs)
	f.monitored = boolParam(q, "cf_monitored", errs)
	f.q = strings.ToLower(strings.TrimSpace(q.Get("q")))
	f.names = q["name"]
	f.owners = q["cf_asset_owner"]
	for _, v := range q["id"] {
		id, err := strconv.Atoi(v)
		if err != nil {
			errs.add("id", "Enter a whole number.")
			continue
		}
		f.ids = append(f.ids, id)
	}
	if v := q.Get("last_updated__gte"); v != "" {
		t, ok := parseDateTime(v)
		if !ok {
			errs.add("last_updated__gte", "Enter a valid date/time.")
		}
		f.updatedSince, f.byUpdated = t, ok
	}
	return f
}

func orMask(cur uint64, set bool, m uint64) (uint64, bool) {
	if !set {
		return m, true
	}
	return cur | m, true
}

// slugMask reads a repeatable slug filter; an unknown slug is NetBox's 400.
func slugMask[T any](q url.Values, param string, list []T, slugOf func(T) string, errs validationErrors) (uint64, bool) {
	vals, ok := q[param]
	if !ok {
		return 0, false
	}
	var m uint64
	for _, v := range vals {
		i := slugIndex(list, slugOf, v)
		if i < 0 {
			errs.add(param, invalidChoice(v))
			continue
		}
		m |= 1 << i
	}
	return m, true
}

// idMask reads a repeatable id filter over ids 1..count.
func idMask(q url.Values, param string, count int, errs validationErrors) (uint64, bool) {
	vals, ok := q[param]
	if !ok {
		return 0, false
	}
	var m uint64
	for _, v := range vals {
		id, err := strconv.Atoi(v)
		if err != nil || id < 1 || id > count {
			errs.add(param, invalidChoice(v))
			continue
		}
		m |= 1 << (id - 1)
	}
	return m, true
}

func boolParam(q url.Values, param string, errs validationErrors) *bool {
	v, ok := q[param]
	if !ok {
		return nil
	}
	switch strings.ToLower(v[0]) {
	case "true", "1", "yes":
		return ptr(true)
	case "false", "0", "no":
		return ptr(false)
	}
	errs.add(param, "Select a valid choice. "+v[0]+" is not one of the available choices.")
	return nil
}

func parseDateTime(v string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func (f *deviceFilter) all() bool { return f.key == "" }

func (f *deviceFilter) match(a *attrs) bool {
	switch {
	case f.bySite && f.sites&(1<<a.site) == 0,
		f.byRole && f.roles&(1<<a.role) == 0,
		f.byStatus && f.statuses&(1<<a.status) == 0,
		f.byTenant && (a.tenant < 0 || f.tenants&(1<<a.tenant) == 0),
		a.tags&f.allTags != f.allTags,
		f.hasPrimary != nil && *f.hasPrimary != (a.hasIP4 || a.hasIP6),
		f.byCriticality && f.criticality&(1<<a.criticality) == 0,
		f.monitored != nil && *f.monitored != a.monitored,
		f.byUpdated && a.updated.Before(f.updatedSince),
		len(f.ids) > 0 && !slices.Contains(f.ids, a.ord+1):
		return false
	}
	name, named := a.name()
	if len(f.names) > 0 && (!named || !slices.Contains(f.names, name)) {
		return false
	}
	if len(f.owners) > 0 && (a.owner < 0 || !slices.Contains(f.owners, assetOwners[a.owner])) {
		return false
	}
	if f.q != "" {
		tag, hasTag := a.assetTagString()
		matches := strings.Contains(strings.ToLower(name), f.q) ||
			strings.Contains(strings.ToLower(a.serialString()), f.q) ||
			(hasTag && strings.Contains(strings.ToLower(tag), f.q))
		if !matches {
			return false
		}
	}
	return true
}

// deviceList selects devices by the request's filters, in id order.
func (s *Server) deviceList(q url.Values, errs validationErrors) list {
	f := parseDeviceFilter(q, errs)
	gen := s.inv.mut.generation()
	l := list{key: fmt.Sprintf("devices@%d:%s", gen, f.key), render: func(ord int, refs *refTable) any {
		a := s.inv.attrs(ord)
		return s.inv.device(&a, refs)
	}, attrs: s.inv.attrs}
	switch {
	case len(errs) > 0:
		l.view = ordinals.All(0)
	case f.all() && gen == 0:
		l.view = ordinals.All(s.inv.n)
	default:
		l.view = s.results.Get(l.key, func() ordinals.List {
			out := ordinals.List{}
			for i := range s.inv.n {
				a := s.inv.attrs(i)
				if !a.deleted && f.match(&a) {
					out = append(out, int32(i))
				}
			}
			return out
		})
	}
	return l
}

// MatchingDeviceIDs returns the ids of the devices a filter query string
// (for example "status=active&site=hq") selects, in id order: what a client
// that pages through the whole list should end up with.
func (s *Server) MatchingDeviceIDs(filter string) ([]int, error) {
	q, err := url.ParseQuery(filter)
	if err != nil {
		return nil, fmt.Errorf("parsing device filter %q: %w", filter, err)
	}
	errs := validationErrors{}
	l := s.deviceList(q, errs)
	if len(errs) > 0 {
		return nil, fmt.Errorf("device filter %q: %w", filter, errs)
	}
	return ordinals.IDs(l.view), nil
}

// Error makes validationErrors an error for MatchingDeviceIDs.
func (e validationErrors) Error() string {
	var parts []string
	for _, field := range slices.Sorted(maps.Keys(e)) {
		parts = append(parts, field+": "+strings.Join(e[field], " "))
	}
	return "invalid filter: " + strings.Join(parts, "; ")
}
