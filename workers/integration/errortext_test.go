package integration_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/serviceradar/sync-operator/workers/integration"
)

func TestErrorText(t *testing.T) {
	const secret = "s3cr3t-0123456789abcdef"
	huge := strings.Repeat("internal-db01.corp stack frame\n", 40000) // ~1.2 MiB
	cases := []struct {
		name        string
		contentType string
		body        string
		want        string // exact result
	}{
		{name: "NetBox detail", contentType: "application/json", body: `{"detail":"Invalid token"}`, want: "Invalid token"},
		{name: "Armis message", contentType: "application/json", body: `{"message":"Invalid AQL","success":false}`, want: "Invalid AQL"},
		{name: "proxy error", contentType: "application/json", body: `{"error":"upstream timed out"}`, want: "upstream timed out"},
		{name: "validation map", contentType: "application/json", body: "{\"site\": [\"Select a valid choice.\"]}\n", want: `{"site":["Select a valid choice."]}`},
		{name: "plain text", contentType: "text/plain", body: "  upstream\r\nconnect error\t(503)  ", want: "upstream connect error (503)"},
		{name: "HTML by content type", contentType: "text/html; charset=utf-8", body: "Bad gateway from internal-db01.corp", want: ""},
		{name: "HTML by its first character", contentType: "application/json", body: "\n <!DOCTYPE html><html><title>internal-db01.corp</title></html>", want: ""},
		{name: "XML", contentType: "application/xml", body: "error at internal-db01.corp", want: ""},
		{name: "huge HTML page", contentType: "text/html", body: "<html><body><pre>" + huge + "</pre></body></html>", want: ""},
		{name: "markup inside a JSON message", contentType: "application/json", body: `{"detail":"<b>denied</b> by <a href=\"http://internal-db01.corp\">proxy</a>"}`, want: "denied by proxy"},
		{name: "control and format characters", contentType: "application/json",
			body: `{"message":"line one\nline two\u001b[31m red\u0000 nul \u202egnp.exe\u200b zero"}`, want: "line one line two [31m red nul gnp.exe zero"},
		{name: "invalid UTF-8", contentType: "text/plain", body: "bad \xff\xfe bytes", want: "bad bytes"},
		{name: "secret echoed", contentType: "application/json", body: `{"message":"key ` + secret + ` refused"}`, want: "key [redacted] refused"},
		{name: "empty", contentType: "application/json", body: "  \n ", want: ""},
		{name: "JSON message cut by the read", contentType: "application/json",
			body: `{"success":false,"message":"quota \u00e9xceeded: ` + strings.Repeat(`\u001b[0m`, 2000) + `","trace":"x"}`,
			want: integration.Excerpt("quota éxceeded:"+strings.Repeat(" [0m", 2000), integration.MaxErrorText)},
		{name: "JSON detail ended before the read's cut", contentType: "application/json",
			body: `{"detail":"Not found.","padding":"` + strings.Repeat("x", 8000) + `"}`, want: "Not found."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := integration.ErrorText(strings.NewReader(tc.body), tc.contentType, secret)
			if got != tc.want {
				t.Errorf("ErrorText = %q, want %q", got, tc.want)
			}
			checkClean(t, got)
		})
	}
}

// TestErrorTextBounds feeds long bodies and checks the length bound, a cut
// on a character boundary and that no part of a secret survives a cut.
func TestErrorTextBounds(t *testing.T) {
	const secret = "s3cr3t-0123456789abcdef"
	cases := []struct {
		name      string
		body      string
		shortened bool
	}{
		{"1 MiB JSON message", `{"message":"` + strings.Repeat("é", 1<<19) + `"}`, true},
		{"1 MiB plain text", strings.Repeat("word ", 1<<18), true},
		{"secret cut by the read limit", strings.Repeat(" ", 4079) + "key is " + secret + strings.Repeat("b", 100), false},
		{"secret across the length limit", strings.Repeat("a", integration.MaxErrorText-7) + secret, true},
		{"multibyte at the length limit", strings.Repeat("a", integration.MaxErrorText-1) + "€€€", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := integration.ErrorText(strings.NewReader(tc.body), "text/plain", secret)
			if len(got) > integration.MaxErrorText+len("…") {
				t.Errorf("%d bytes, want at most %d and an ellipsis", len(got), integration.MaxErrorText)
			}
			if strings.HasSuffix(got, "…") != tc.shortened {
				t.Errorf("%q: shortened %v, want %v", got, !tc.shortened, tc.shortened)
			}
			for n := 4; n <= len(secret); n++ {
				if strings.Contains(got, secret[:n]) {
					t.Fatalf("%q holds %q of the secret", got, secret[:n])
				}
			}
			checkClean(t, got)
		})
	}
}

// checkClean fails when s is not one line of printable, valid UTF-8 text
// without markup.
func checkClean(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%q is not valid UTF-8", s)
	}
	if i := strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '<' || r == '>'
	}); i >= 0 {
		t.Errorf("%q holds %q at %d", s, s[i:min(i+4, len(s))], i)
	}
}

func TestExcerpt(t *testing.T) {
	cases := []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven cha…"},
		{"a\n\n\tb", 10, "a b"},
		{"€€€€", 7, "€€…"},
		{"\x00\x01", 10, ""},
	}
	for _, tc := range cases {
		if got := integration.Excerpt(tc.in, tc.limit); got != tc.want {
			t.Errorf("Excerpt(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}
