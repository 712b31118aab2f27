package netboxemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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
	}
	pg, err := parsePaging(q)
	if err != nil {
		errs.add("start", err.Error())
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
// above the maximum is cut to it; a bad offset means 0.
func parsePaging(q url.Values) (paging, error) {
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
	if v, ok := q["start"]; ok {
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
	return b.Bytes(), nil
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
	KindDevices:      {"id", "url", "display", "name", "description"},
	KindInterfaces:   {"id", "url", "display", "device", "name", "description", "cable", "_occupied"},
	KindMACAddresses: {"id", "url", "display", "mac_address", "description"},
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
