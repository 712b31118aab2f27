package armisemu

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// query is a parsed AQL device search.
type query struct {
	root node
}

// all reports whether the query matches every device.
func (q query) all() bool {
	and, ok := q.root.(andNode)
	return ok && len(and) == 1
}

// key identifies the query's result set for the cache.
func (q query) key() string { return q.root.key() }

func (q query) match(c core) bool { return q.root.match(c) }

// node is one part of a query's expression.
type node interface {
	match(c core) bool
	key() string
}

type (
	andNode   []node
	orNode    []node
	notNode   struct{ n node }
	inDevices struct{}
	// sinceTerm: lastSeen after t (timeFrame: and after:).
	sinceTerm struct{ t time.Time }
	// boundTerm: in one of the boundaries of mask.
	boundTerm struct{ mask uint8 }
	// typeTerm: of one of the types of the set (indexes in typeNames).
	typeTerm struct{ set uint64 }
	// siteTerm: at one of the sites of the set (indexes in sites).
	siteTerm struct{ set uint64 }
)

func (n andNode) match(c core) bool {
	for _, x := range n {
		if !x.match(c) {
			return false
		}
	}
	return true
}

func (n orNode) match(c core) bool {
	for _, x := range n {
		if x.match(c) {
			return true
		}
	}
	return false
}

func (n notNode) match(c core) bool   { return !n.n.match(c) }
func (inDevices) match(core) bool     { return true }
func (n sinceTerm) match(c core) bool { return c.lastSeen.After(n.t) }
func (n boundTerm) match(c core) bool { return c.boundaries&n.mask != 0 }
func (n typeTerm) match(c core) bool {
	i := typeIndex(armisTypes[c.kind].typ)
	return i >= 0 && n.set&(1<<i) != 0
}
func (n siteTerm) match(c core) bool { return n.set&(1<<c.site) != 0 }

func joinKeys(op string, ns []node) string {
	parts := make([]string, len(ns))
	for i, x := range ns {
		parts[i] = x.key()
	}
	return op + "(" + strings.Join(parts, ",") + ")"
}

func (n andNode) key() string   { return joinKeys("and", n) }
func (n orNode) key() string    { return joinKeys("or", n) }
func (n notNode) key() string   { return "not(" + n.n.key() + ")" }
func (inDevices) key() string   { return "in" }
func (n sinceTerm) key() string { return fmt.Sprintf("since=%d", n.t.UnixMicro()) }
func (n boundTerm) key() string { return fmt.Sprintf("bounds=%d", n.mask) }
func (n typeTerm) key() string  { return fmt.Sprintf("type=%d", n.set) }
func (n siteTerm) key() string  { return fmt.Sprintf("site=%d", n.set) }

// parseAQL parses the subset of AQL the emulator understands; see the
// package documentation. epoch is the instant timeFrame counts back from.
func parseAQL(aql string, epoch time.Time) (query, error) {
	toks, err := tokenize(aql)
	if err != nil {
		return query{}, err
	}
	p := &aqlParser{toks: toks, epoch: epoch}
	root, err := p.or()
	if err != nil {
		return query{}, err
	}
	if p.pos < len(p.toks) {
		return query{}, fmt.Errorf("unexpected %q", p.toks[p.pos])
	}
	and, ok := root.(andNode)
	if !ok {
		and = andNode{root}
	}
	// in:devices is the search's subject: once, at the top level, never
	// negated or alternated. It goes first, so all() can recognise it alone.
	var rest andNode
	sawIn := false
	for _, n := range and {
		if _, isIn := n.(inDevices); isIn {
			if sawIn {
				return query{}, fmt.Errorf("query %q names in:devices twice", aql)
			}
			sawIn = true
			continue
		}
		if hasIn(n) {
			return query{}, fmt.Errorf("query %q: in: must be a top-level term", aql)
		}
		rest = append(rest, n)
	}
	if !sawIn {
		return query{}, fmt.Errorf("query %q has no in:devices", aql)
	}
	return query{root: append(andNode{inDevices{}}, rest...)}, nil
}

func hasIn(n node) bool {
	switch x := n.(type) {
	case inDevices:
		return true
	case andNode:
		for _, y := range x {
			if hasIn(y) {
				return true
			}
		}
	case orNode:
		for _, y := range x {
			if hasIn(y) {
				return true
			}
		}
	case notNode:
		return hasIn(x.n)
	}
	return false
}

// aqlParser is a recursive-descent parser over tokens:
//
//	or    := and { OR and }
//	and   := unary { [AND] unary }
//	unary := ("!" | NOT) unary | "(" or ")" | key:value
type aqlParser struct {
	toks  []string
	pos   int
	epoch time.Time
}

func (p *aqlParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *aqlParser) or() (node, error) {
	first, err := p.and()
	if err != nil {
		return nil, err
	}
	out := orNode{first}
	for strings.EqualFold(p.peek(), "or") {
		p.pos++
		n, err := p.and()
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 1 {
		return first, nil
	}
	return out, nil
}

func (p *aqlParser) and() (node, error) {
	var out andNode
	for {
		t := p.peek()
		if t == "" || t == ")" || strings.EqualFold(t, "or") {
			break
		}
		if strings.EqualFold(t, "and") {
			p.pos++
			continue
		}
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	switch len(out) {
	case 0:
		return nil, fmt.Errorf("empty expression before %q", p.peek())
	case 1:
		return out[0], nil
	}
	return out, nil
}

func (p *aqlParser) unary() (node, error) {
	t := p.peek()
	p.pos++
	switch {
	case t == "!" || strings.EqualFold(t, "not"):
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case t == "(":
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("unbalanced parenthesis")
		}
		p.pos++
		return n, nil
	case t == ")":
		return nil, fmt.Errorf("unbalanced parenthesis")
	}
	return p.term(t)
}

// term parses key:value; value is a word, a quoted string or a comma list
// of them (any of which matches).
func (p *aqlParser) term(t string) (node, error) {
	key, val, ok := strings.Cut(t, ":")
	if !ok {
		return nil, fmt.Errorf("term %q is not key:value", t)
	}
	switch key {
	case "in":
		if unquote(val) != "devices" {
			return nil, fmt.Errorf("in:%s is not supported, only in:devices", val)
		}
		return inDevices{}, nil
	case "timeFrame":
		span, err := parseTimeFrame(unquote(val))
		if err != nil {
			return nil, fmt.Errorf("timeFrame %q: %w", val, err)
		}
		return sinceTerm{p.epoch.Add(-span)}, nil
	case "after":
		at, err := parseAfter(unquote(val))
		if err != nil {
			return nil, fmt.Errorf("after %q: %w", val, err)
		}
		return sinceTerm{at}, nil
	case "boundaries":
		var mask uint8
		for _, name := range values(val) {
			for b, known := range boundaries {
				if strings.EqualFold(name, known) {
					mask |= 1 << b
				}
			}
		}
		return boundTerm{mask}, nil
	case "type":
		var set uint64
		for _, name := range values(val) {
			for i, known := range typeNames {
				if strings.EqualFold(name, known) {
					set |= 1 << i
				}
			}
		}
		return typeTerm{set}, nil
	case "site":
		var set uint64
		for _, name := range values(val) {
			for i, known := range sites {
				if strings.EqualFold(name, known.Name) {
					set |= 1 << i
				}
			}
		}
		return siteTerm{set}, nil
	}
	return nil, fmt.Errorf("unsupported term %q", key)
}

// values splits a term's value on commas, inside quotes or out (no name
// holds one), and trims each.
func values(v string) []string {
	out := strings.Split(strings.ReplaceAll(v, `"`, ""), ",")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

// tokenize splits on spaces outside double quotes; parentheses and a
// leading "!" outside quotes are tokens of their own.
func tokenize(aql string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	quoted := false
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for _, r := range aql {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case quoted:
			cur.WriteRune(r)
		case unicode.IsSpace(r):
			flush()
		case r == '(' || r == ')':
			flush()
			toks = append(toks, string(r))
		case r == '!' && cur.Len() == 0:
			toks = append(toks, "!")
		default:
			cur.WriteRune(r)
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", aql)
	}
	flush()
	return toks, nil
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
