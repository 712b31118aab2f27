package armisemu

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// query is a parsed AQL device search: the conjunction of its terms.
type query struct {
	// since: lastSeen must be after it (timeFrame and after:, the later wins).
	since    time.Time
	hasSince bool
	// boundaries: when hasBounds, the device must be in one of these.
	boundaries uint8
	hasBounds  bool
}

// all reports whether the query matches every device.
func (q query) all() bool { return !q.hasSince && !q.hasBounds }

// key identifies the query's result set for the cache.
func (q query) key() string {
	var b strings.Builder
	if q.hasSince {
		fmt.Fprintf(&b, "since=%d;", q.since.UnixMicro())
	}
	if q.hasBounds {
		fmt.Fprintf(&b, "bounds=%d;", q.boundaries)
	}
	return b.String()
}

func (q query) match(c core) bool {
	if q.hasSince && !c.lastSeen.After(q.since) {
		return false
	}
	if q.hasBounds && c.boundaries&q.boundaries == 0 {
		return false
	}
	return true
}

// parseAQL parses the subset of AQL the emulator understands; see the
// package documentation. epoch is the instant timeFrame counts back from.
func parseAQL(aql string, epoch time.Time) (query, error) {
	terms, err := splitTerms(aql)
	if err != nil {
		return query{}, err
	}
	var q query
	sawIn := false
	for _, t := range terms {
		key, val, ok := strings.Cut(t, ":")
		if !ok {
			return query{}, fmt.Errorf("term %q is not key:value", t)
		}
		val = unquote(val)
		switch key {
		case "in":
			if val != "devices" {
				return query{}, fmt.Errorf("in:%s is not supported, only in:devices", val)
			}
			sawIn = true
		case "timeFrame":
			span, err := parseTimeFrame(val)
			if err != nil {
				return query{}, fmt.Errorf("timeFrame %q: %w", val, err)
			}
			q.narrowSince(epoch.Add(-span))
		case "after":
			t, err := parseAfter(val)
			if err != nil {
				return query{}, fmt.Errorf("after %q: %w", val, err)
			}
			q.narrowSince(t)
		case "boundaries":
			q.hasBounds = true
			for name := range strings.SplitSeq(val, ",") {
				name = strings.TrimSpace(name)
				for b, known := range boundaries {
					if strings.EqualFold(name, known) {
						q.boundaries |= 1 << b
					}
				}
			}
		default:
			return query{}, fmt.Errorf("unsupported term %q", key)
		}
	}
	if !sawIn {
		return query{}, fmt.Errorf("query %q has no in:devices", aql)
	}
	return q, nil
}

func (q *query) narrowSince(t time.Time) {
	if !q.hasSince || t.After(q.since) {
		q.since, q.hasSince = t, true
	}
}

// splitTerms splits on spaces outside double quotes.
func splitTerms(aql string) ([]string, error) {
	var terms []string
	var cur strings.Builder
	quoted := false
	for _, r := range aql {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case unicode.IsSpace(r) && !quoted:
			if cur.Len() > 0 {
				terms = append(terms, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", aql)
	}
	if cur.Len() > 0 {
		terms = append(terms, cur.String())
	}
	return terms, nil
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

var timeUnits = map[string]time.Duration{
	"second": time.Second,
	"minute": time.Minute,
	"hour":   time.Hour,
	"day":    24 * time.Hour,
	"week":   7 * 24 * time.Hour,
}

// parseTimeFrame parses "<n> <unit>", unit singular or plural, any case.
func parseTimeFrame(v string) (time.Duration, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return 0, fmt.Errorf("want \"<n> <unit>\"")
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("count %q is not a non-negative integer", num)
	}
	d, ok := timeUnits[strings.TrimSuffix(strings.ToLower(strings.TrimSpace(unit)), "s")]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	return time.Duration(n) * d, nil
}

// parseAfter parses a second-granularity UTC time, with or without a zone.
func parseAfter(v string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05", time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC().Truncate(time.Second), nil
		}
	}
	return time.Time{}, fmt.Errorf("want YYYY-MM-DDTHH:MM:SS")
}
