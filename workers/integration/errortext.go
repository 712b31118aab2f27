package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxErrorText bounds, in bytes, the text an error takes from an answer's
// body (the errors end in the logs and in status.lastError).
const MaxErrorText = 200

// maxErrorRead is how much of an error answer's body is read for its text.
const maxErrorRead = 4 << 10

// redacted replaces a secret found in error text.
const redacted = "[redacted]"

// markup matches an HTML or XML tag, or what is left of one, which error
// text never repeats.
var markup = regexp.MustCompile(`<[^<>]*>|[<>]`)

// ErrorText returns what an error may repeat of an error answer's body: a
// single line of at most MaxErrorText bytes (and a "…" when shortened) with no control or format
// characters and no markup. It is the "message", "detail" or "error" string
// of a JSON body (as much of it as was read), else the JSON body itself (a
// validation map), else the body when it is plain text, with tags and angle brackets removed. An HTML body (by its Content-Type or its first
// character) gives "": such pages are a proxy's or a server's internals, and
// the status code says enough. Every non-empty secret is replaced, also when
// the read or the shortening cut it. Only the first 4 KiB of body are read.
func ErrorText(body io.Reader, contentType string, secrets ...string) string {
	raw, _ := io.ReadAll(io.LimitReader(body, maxErrorRead+1))
	cut := len(raw) > maxErrorRead
	if cut {
		raw = raw[:maxErrorRead]
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || isHTML(contentType) || trimmed[0] == '<' {
		return ""
	}
	text := string(trimmed)
	switch {
	case !cut && json.Valid(trimmed):
		text = jsonMessage(trimmed)
	case trimmed[0] == '{':
		if msg, ok := cutJSONMessage(trimmed); ok {
			text = msg
		}
	}
	text = redact(text, secrets)
	if cut {
		text = trimSecretPrefix(text, secrets)
	}
	return Excerpt(markup.ReplaceAllString(text, " "), MaxErrorText)
}

// isHTML says whether a Content-Type names an HTML or XML document.
func isHTML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "text/html" || mt == "application/xhtml+xml" || strings.HasSuffix(mt, "/xml") || strings.HasSuffix(mt, "+xml")
}

// jsonMessage is the message of a JSON error body: its "message", "detail"
// or "error" string (NetBox, Armis and common proxies), else the compacted
// body.
func jsonMessage(raw []byte) string {
	var shaped struct {
		Message any `json:"message"`
		Detail  any `json:"detail"`
		Error   any `json:"error"`
	}
	if json.Unmarshal(raw, &shaped) == nil {
		for _, v := range []any{shaped.Message, shaped.Detail, shaped.Error} {
			if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
				return s
			}
		}
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// cutJSONMessage finds the start of the "message", "detail" or "error"
// string of a JSON object whose end the read cut off, and decodes as much
// of it as was read.
func cutJSONMessage(raw []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		if name, _ := tok.(string); name == "message" || name == "detail" || name == "error" {
			rest := bytes.TrimLeft(raw[dec.InputOffset():], " \t\r\n:")
			if len(rest) == 0 || rest[0] != '"' {
				return "", false
			}
			var s string
			if json.NewDecoder(bytes.NewReader(rest)).Decode(&s) == nil {
				return s, true // the string ended before the cut
			}
			// Close the string where it was cut, first dropping up to a
			// cut escape sequence (at most \uXXXX).
			for drop := 0; drop <= 6 && drop < len(rest); drop++ {
				if json.Unmarshal(append(bytes.Clone(rest[:len(rest)-drop]), '"'), &s) == nil {
					return s, true
				}
			}
			return "", false
		}
		if err := skip(dec); err != nil {
			return "", false
		}
	}
	return "", false
}

// redact replaces every non-empty secret in s.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// trimSecretPrefix drops an end of s that is the start of a secret, as a
// secret cut by a length limit leaves.
func trimSecretPrefix(s string, secrets []string) string {
	for _, sec := range secrets {
		for n := min(len(sec)-1, len(s)); n > 0; n-- {
			if strings.HasSuffix(s, sec[:n]) {
				s = s[:len(s)-n]
				break
			}
		}
	}
	return s
}

// Excerpt makes s fit for an error or a log line: invalid UTF-8, control
// characters (line breaks, escape sequences) and format characters (bidi
// overrides, zero-width marks) become spaces, runs of spaces become one, and
// the result is cut on a character boundary to at most limit bytes, followed
// by "…" when something was cut.
func Excerpt(s string, limit int) string {
	var b strings.Builder
	b.Grow(min(len(s), limit+len("…")))
	space := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		extra := size
		if space {
			extra++
		}
		if b.Len()+extra > limit {
			b.WriteString("…")
			return b.String()
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}
