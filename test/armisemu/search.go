package armisemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/serviceradar/sync-operator/test/apifault"
)

// searchParams are a search request's validated parameters.
type searchParams struct {
	q      query
	from   int
	length int
	order  string
	fields []string
}

func (s *Server) serveSearch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		s.stats.notFound.Add(1)
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	// Armis sends the raw token; "Bearer <token>" is just a wrong token.
	if !s.tokens.authorize(r.Header.Get("Authorization")) {
		s.stats.unauthorized.Add(1)
		writeError(w, http.StatusUnauthorized, "Invalid access token")
		return
	}
	p, err := s.parseSearch(r.URL.Query())
	if err != nil {
		s.stats.badRequests.Add(1)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.faults.ServePage(w, p.from, &s.stats.searchPages, func() ([]byte, error) { return s.searchPage(p) })
}

func (s *Server) parseSearch(v url.Values) (searchParams, error) {
	p := searchParams{length: DefaultPageLength, order: orderByID}
	aql := v.Get("aql")
	if aql == "" {
		return p, fmt.Errorf("missing aql parameter")
	}
	q, err := parseAQL(aql, s.inv.epoch)
	if err != nil {
		return p, fmt.Errorf("invalid aql: %w", err)
	}
	p.q = q
	if f := v.Get("from"); f != "" {
		if p.from, err = strconv.Atoi(f); err != nil || p.from < 0 {
			return p, fmt.Errorf("from %q must be a non-negative integer", f)
		}
	}
	if l := v.Get("length"); l != "" {
		if p.length, err = strconv.Atoi(l); err != nil || p.length < 1 || p.length > MaxPageLength {
			return p, fmt.Errorf("length %q must be an integer within 1..%d", l, MaxPageLength)
		}
	}
	switch o := v.Get("orderBy"); o {
	case "", orderByID:
	case orderByLastSeen:
		p.order = orderByLastSeen
	default:
		return p, fmt.Errorf("orderBy %q must be id or lastSeen", o)
	}
	if f := v.Get("fields"); f != "" {
		p.fields = strings.Split(f, ",")
	}
	return p, nil
}

// searchPage renders one page as
// {"data":{"count","next","prev","results","total"},"success":true}. The
// envelope is written by hand so that device JSON is not re-validated. total
// is always included: the reference's answer carries it, and
// includeTotal=true only asks for what is there.
func (s *Server) searchPage(p searchParams) ([]byte, error) {
	v := s.view(p.q, p.order)
	total := v.Len()
	end := min(p.from+p.length, total)
	count := max(end-p.from, 0)
	var b bytes.Buffer
	b.Grow(count * 700)
	fmt.Fprintf(&b, `{"data":{"count":%d,"next":%s,"prev":%s,"results":[`, count,
		offsetOrNull(p.from+count < total, p.from+count), offsetOrNull(p.from > 0, max(p.from-p.length, 0)))
	for k := p.from; k < end; k++ {
		raw, err := json.Marshal(s.inv.device(v.At(k)))
		if err != nil {
			return nil, fmt.Errorf("encoding device ordinal %d: %w", v.At(k), err)
		}
		if p.fields != nil {
			if raw, err = apifault.KeepFields(raw, p.keep); err != nil {
				return nil, fmt.Errorf("trimming device ordinal %d: %w", v.At(k), err)
			}
		}
		if k > p.from {
			b.WriteByte(',')
		}
		b.Write(raw)
	}
	fmt.Fprintf(&b, `],"total":%d},"success":true}`, total)
	return b.Bytes(), nil
}

func offsetOrNull(ok bool, off int) string {
	if !ok {
		return "null"
	}
	return strconv.Itoa(off)
}

// keep reports whether the fields parameter names the field name; names are
// trimmed, as clients write "a, b".
func (p searchParams) keep(name string) bool {
	return containsTrimmed(p.fields, name)
}

func containsTrimmed(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}
