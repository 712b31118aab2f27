package netboxemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/serviceradar/sync-operator/test/apifault"
	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// list is one endpoint's answer before paging: the ordinals it selects and
// how to render one.
type list struct {
	view   ordinals.View
	render func(ord int, refs *refTable) any
	// key names the selection in the cache; attrs gives the attributes of
	// an ordinal. Both are set for the lists NetBox orders by name
	// (devices, virtual machines).
	key   string
	attrs func(ord int) attrs
}

// validationErrors is NetBox's 400 shape: field name to messages.
type validationErrors map[string][]string

func (e validationErrors) add(field, msg string) {
	e[field] = append(e[field], msg)
}

func invalidChoice(value string) string {
	return fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", value)
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, kind Kind) {
	q := r.URL.Query()
	errs := validationErrors{}
	var l list
	switch kind {
	case KindDevices:
		l = s.deviceList(q, errs)
	case KindInterfaces:
		l = s.interfaceList(q, errs)
	case KindMACAddresses:
		l = s.macList(q, errs)
	case KindIPAddresses:
		l = s.ipList(q, errs)
	case KindVirtualMachines:
		l = s.vmList(q, errs)
	case KindVMInterfaces:
		l = s.vmInterfaceList(q, errs)
	}
	pg, err := parsePaging(q, !s.noCursor)
	if err != nil {
		errs.add("start", err.Error())
	}
	if l.attrs != nil && !pg.cursor && len(errs) == 0 {
		// limit/offset pages follow NetBox's ordering of devices and VMs,
		// by natural name then id; cursor pages follow ids.
		l.view = s.results.Get("by-name:"+l.key, func() ordinals.List { return byName(l.view, l.attrs) })
	}
	if len(errs) > 0 {
		s.stats.badRequests.Add(1)
		body, _ := json.Marshal(errs)
		apifault.WriteJSON(w, http.StatusBadRequest, body)
		return
	}
	first := pg.firstRow(l.view)
	s.faults.ServePage(w, pageKey{kind, first}, s.stats.pages(kind), func() ([]byte, error) {
		return s.renderPage(r, kind, l, pg, first)
	})
}

// paging is a request's limit/offset or cursor (start) paging.
type paging struct {
	limit  int
	offset int
	cursor bool
	start  int
}

// parsePaging reads limit and offset as NetBox does: a negative or
// unparseable limit means the default, 0 means the maximum, and anything
// above the maximum is cut to it; a bad offset means 0. Without cursor
// (NetBox before 4.6) start is ignored.
func parsePaging(q url.Values, cursor bool) (paging, error) {
	p := paging{limit: DefaultPageSize}
	if v, ok := q["limit"]; ok {
		if n, err := strconv.Atoi(v[0]); err == nil && n >= 0 {
			p.limit = n
			if n == 0 || n > MaxPageSize {
				p.limit = MaxPageSize
			}
		}
	}
	if n, err := strconv.Atoi(q.Get("offset")); err == nil && n > 0 {
		p.offset = n
	}
	if v, ok := q["start"]; ok && cursor {
		if _, both := q["offset"]; both {
			return p, fmt.Errorf("start and offset cannot be used together")
		}
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 {
			return p, fmt.Errorf("start %q is not a non-negative integer", v[0])
		}
		p.cursor, p.start = true, n
	}
	return p, nil
}

// firstRow is the position in v of the page's first row. Views hold
// ascending ordinals and id = ordinal+1, so the cursor is a binary search.
func (p paging) firstRow(v ordinals.View) int {
	if !p.cursor {
		return p.offset
	}
	return sort.Search(v.Len(), func(k int) bool { return v.At(k)+1 >= p.start })
}

// renderPage writes {"count","next","previous","results"} by hand so that
// object JSON is not re-validated.
func (s *Server) renderPage(r *http.Request, kind Kind, l list, pg paging, first int) ([]byte, error) {
	u := baseURL(r)
	refs := s.refs.get(u)
	trim := trimmerFor(kind, r.URL.Query())
	total := l.view.Len()
	end := min(first+pg.limit, total)
	var b bytes.Buffer
	b.Grow(max(end-first, 0) * 3500) // about a full device; growing copies
	count, previous := strconv.Itoa(total), "null"
	next := "null"
	switch {
	case pg.cursor:
		count = "null"
		if end < total {
			next = pageURL(r, u, map[string]int{"start": l.view.At(end-1) + 2, "limit": pg.limit}, "")
		}
	default:
		if pg.offset+pg.limit < total {
			next = pageURL(r, u, map[string]int{"offset": pg.offset + pg.limit, "limit": pg.limit}, "")
		}
		if pg.offset > 0 {
			if pg.offset-pg.limit <= 0 {
				previous = pageURL(r, u, map[string]int{"limit": pg.limit}, "offset")
			} else {
				previous = pageURL(r, u, map[string]int{"offset": pg.offset - pg.limit, "limit": pg.limit}, "")
			}
		}
	}
	fmt.Fprintf(&b, `{"count":%s,"next":%s,"previous":%s,"results":[`, count, next, previous)
	for k := first; k < end; k++ {
		raw, err := json.Marshal(l.render(l.view.At(k), refs))
		if err != nil {
			return nil, fmt.Errorf("encoding %s ordinal %d: %w", kind, l.view.At(k), err)
		}
		if trim != nil {
			if raw, err = apifault.KeepFields(raw, trim); err != nil {
				return nil, fmt.Errorf("trimming %s ordinal %d: %w", kind, l.view.At(k), err)
			}
		}
		if k > first {
			b.WriteByte(',')
		}
		b.Write(raw)
	}
	b.WriteString("]}")
	if (kind == KindDevices || kind == KindVirtualMachines) && computesConfigContext(r.URL.Query()) {
		s.stats.configContexts.Add(int64(max(end-first, 0)))
	}
	return b.Bytes(), nil
}

// computesConfigContext says whether NetBox renders the config context of
// every device (or VM) of a page: unless the request is brief or excludes
// config_context, fields= notwithstanding (NetBox annotates the queryset
// before it trims the objects).
func computesConfigContext(q url.Values) bool {
	if b := strings.ToLower(q.Get("brief")); b == "true" || b == "1" {
		return false
	}
	for _, e := range strings.Split(q.Get("exclude"), ",") {
		if strings.TrimSpace(e) == "config_context" {
			return false
		}
	}
	return true
}

// byName orders the ordinals of v as NetBox orders devices and VMs: by
// naturalized name (digit runs padded to eight places), unnamed last, then
// by id.
func byName(v ordinals.View, attrsOf func(int) attrs) ordinals.List {
	type row struct {
		key   string
		named bool
		ord   int32
	}
	rows := make([]row, v.Len())
	for k := range rows {
		a := attrsOf(v.At(k))
		name, named := a.name()
		rows[k] = row{naturalize(name), named, int32(v.At(k))}
	}
	slices.SortFunc(rows, func(a, b row) int {
		switch {
		case a.named != b.named && a.named:
			return -1
		case a.named != b.named:
			return 1
		}
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return int(a.ord - b.ord)
	})
	out := make(ordinals.List, len(rows))
	for k, r := range rows {
		out[k] = r.ord
	}
	return out
}

// naturalize is NetBox's utilities.ordering.naturalize: every run of digits
// padded to eight places, so "sw10" sorts after "sw9".
func naturalize(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j > i {
			for range 8 - (j - i) {
				b.WriteByte('0')
			}
			b.WriteString(s[i:j])
			i = j
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// baseURL is scheme://host of the request, what NetBox builds absolute URLs
// from.
func baseURL(r *http.Request) urls {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return urls(scheme + "://" + r.Host)
}

// pageURL is the request's absolute URL with params set and drop removed, as
// a JSON string. Query parameters come out sorted, as Django REST
// framework's replace_query_param writes them.
func pageURL(r *http.Request, u urls, params map[string]int, drop string) string {
	q := r.URL.Query()
	for k, v := range params {
		q.Set(k, strconv.Itoa(v))
	}
	if drop != "" {
		q.Del(drop)
	}
	return jsonString(string(u) + r.URL.Path + "?" + q.Encode())
}

// jsonString quotes s as JSON without escaping &, < and >, as Python's json
// module leaves them.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// Fields of the brief form of each kind (brief=true).
var briefFields = map[Kind][]string{
	KindDevices:         {"id", "url", "display", "name", "description"},
	KindVirtualMachines: {"id", "url", "display", "name", "description"},
	KindVMInterfaces:    {"id", "url", "display", "virtual_machine", "name", "description"},
	KindIPAddresses:     {"id", "url", "display", "family", "address", "description"},
	KindInterfaces:      {"id", "url", "display", "device", "name", "description", "cable", "_occupied"},
	KindMACAddresses:    {"id", "url", "display", "mac_address", "description"},
}

// trimmerFor returns which top-level fields to keep, or nil for all:
// fields=a,b keeps those, else brief=true keeps the brief form; exclude=a,b
// then drops fields (NetBox documents exclude=config_context).
func trimmerFor(kind Kind, q url.Values) func(string) bool {
	var keep map[string]bool
	if f := q.Get("fields"); f != "" {
		keep = setOf(strings.Split(f, ","))
	} else if b := strings.ToLower(q.Get("brief")); b == "true" || b == "1" {
		keep = setOf(briefFields[kind])
	}
	var drop map[string]bool
	if e := q.Get("exclude"); e != "" {
		drop = setOf(strings.Split(e, ","))
	}
	if keep == nil && drop == nil {
		return nil
	}
	return func(name string) bool {
		return (keep == nil || keep[name]) && !drop[name]
	}
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, x := range list {
		m[strings.TrimSpace(x)] = true
	}
	return m
}
