// Package hostile holds the pieces of hostile integration servers that the
// integration clients' tests attack them with: a server that records what
// reaches it (where a redirect would carry credentials), pages of millions
// of items generated while they are sent, and error pages full of internals.
package hostile

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// Request is what a Sink recorded of one request.
type Request struct {
	// Method and Path are the request's.
	Method, Path string
	// Authorization is the request's Authorization header.
	Authorization string
	// Body is the first MiB of the request's body.
	Body string
}

// Sink is a server that records every request it gets and answers 200 with
// an empty JSON object: the "other host" a redirect points to.
type Sink struct {
	*httptest.Server

	mu   sync.Mutex
	seen []Request
}

// NewSink starts a Sink over HTTPS with httptest's certificate (which
// httptest's TLS clients trust) or over plain HTTP, closed at cleanup.
func NewSink(t testing.TB, tls bool) *Sink {
	t.Helper()
	s := &Sink{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		s.mu.Lock()
		s.seen = append(s.seen, Request{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), Body: string(body)})
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	})
	if tls {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

// Requests returns what the Sink received so far.
func (s *Sink) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.seen...)
}

// EmptyObject appends the item "{}".
func EmptyObject(buf []byte, _ int) []byte { return append(buf, "{}"...) }

// IDObject appends the item {"id":i+1}.
func IDObject(buf []byte, i int) []byte {
	buf = append(buf, `{"id":`...)
	buf = strconv.AppendInt(buf, int64(i)+1, 10)
	return append(buf, '}')
}

// StreamList answers 200 with prefix, a JSON list of n items written by
// item (which appends item i to buf), and suffix, generating the items while
// it writes them so the server never holds the page. It stops when a write
// fails, as it does once the client hangs up.
func StreamList(w http.ResponseWriter, r *http.Request, prefix string, n int, item func(buf []byte, i int) []byte, suffix string) {
	w.Header().Set("Content-Type", "application/json")
	buf := make([]byte, 0, 64<<10)
	buf = append(append(buf, prefix...), '[')
	for i := range n {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = item(buf, i)
		if len(buf) >= 60<<10 {
			if _, err := w.Write(buf); err != nil || r.Context().Err() != nil {
				return
			}
			buf = buf[:0]
		}
	}
	buf = append(append(buf, ']'), suffix...)
	_, _ = w.Write(buf)
}

// Marker is a string the error pages hold, standing for internals (host
// names, stack traces) that must never reach an error.
const Marker = "internal-db01.corp.example"

// HTMLPage is an HTML error page of about size bytes: a proxy's or a
// framework's debug page, with the Marker, line breaks, tabs, a script and
// an escape sequence throughout.
func HTMLPage(size int) string {
	const line = "<tr><td>\tframe</td><td>" + Marker + ":5432</td><td>\x1b[31mpanic</td></tr>\r\n"
	var b strings.Builder
	b.Grow(size + 256)
	b.WriteString("<!DOCTYPE html>\n<html><head><title>500 at " + Marker + "</title><script>alert(1)</script></head><body><table>\n")
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString("</table></body></html>\n")
	return b.String()
}

// dirtyLine is a line of error text with an escape sequence, markup, a
// bidi override and line breaks.
const dirtyLine = "\x1b[31m<b>detail</b>\u202e\r\n\t"

// DirtyJSON is a JSON error body {"<key>": "upstream failed:\n…"} whose
// message repeats a line with an escape sequence, markup, a bidi override
// and line breaks n times (about 30 bytes each).
func DirtyJSON(key string, n int) string {
	msg, _ := json.Marshal("upstream failed:\n" + strings.Repeat(dirtyLine, n))
	return `{"` + key + `":` + string(msg) + `}`
}

// DirtyText is a plain-text error body of about size bytes, "bad request:"
// followed by lines with raw control bytes, markup and line breaks.
func DirtyText(size int) string {
	var b strings.Builder
	b.WriteString("bad request:\x00")
	for b.Len() < size {
		b.WriteString(dirtyLine)
	}
	return b.String()
}

// MaxErrorLen bounds the text of an error a client made of a hostile
// answer: its own words and at most a short excerpt of the body.
const MaxErrorLen = 600

// CheckCleanError fails the test unless err's text is one line of at most
// MaxErrorLen bytes of printable text, without markup or the Marker of the
// HTML pages, that holds want.
func CheckCleanError(t testing.TB, err error, want string) {
	t.Helper()
	text := err.Error()
	if len(text) > MaxErrorLen {
		t.Errorf("error of %d bytes, want at most %d: %.300q…", len(text), MaxErrorLen, text)
	}
	if strings.Contains(text, Marker) {
		t.Errorf("error repeats an HTML page's internals: %q", text)
	}
	if i := strings.IndexFunc(text, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '<' || r == '>'
	}); i >= 0 {
		t.Errorf("error holds %q at %d: %q", text[i:min(i+8, len(text))], i, text)
	}
	if !strings.Contains(text, want) {
		t.Errorf("error %q does not hold %q", text, want)
	}
}
