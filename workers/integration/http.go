package integration

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// MaxRedirects is how many redirects one request of an integration client
// may follow, all within the origin it was sent to.
const MaxRedirects = 10

// ErrRedirectRefused is wrapped by the errors of requests whose answer
// redirected them to another origin.
var ErrRedirectRefused = errors.New("redirect refused")

// RedirectError is a redirect the integration clients refused to follow. It
// matches ErrRedirectRefused with errors.Is.
type RedirectError struct {
	// Status is the redirecting answer's status code (301, 302, 303, 307,
	// 308), or 0 when unknown.
	Status int
	// From is the origin (scheme://host:port) the request was sent to.
	From string
	// To is the origin the answer redirected to, shortened and cleaned
	// for error text (a hostile server chooses it), or the reason when
	// the redirect was refused for its count.
	To string
}

// Error names the refusal, the status and both origins.
func (e *RedirectError) Error() string {
	status := ""
	if e.Status != 0 {
		status = fmt.Sprintf(" (status %d)", e.Status)
	}
	return fmt.Sprintf("%v%s from %s to %s: integration clients follow redirects only within the endpoint's scheme, host and port",
		ErrRedirectRefused, status, e.From, e.To)
}

// Is makes errors.Is(err, ErrRedirectRefused) hold.
func (e *RedirectError) Is(target error) bool { return target == ErrRedirectRefused }

// CheckRedirect is the redirect policy of every integration client (an
// http.Client.CheckRedirect). A redirect is followed only when it keeps the
// scheme, host and port of the request the client made, so a body holding
// a secret (the Armis token exchange, which Go replays on 307 and 308) and
// the Authorization header are never sent anywhere else, nor downgraded from
// https to http; hosts compare case-insensitively and an absent port is the
// scheme's default. At most MaxRedirects redirects are followed.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	status := 0
	if req.Response != nil {
		status = req.Response.StatusCode
	}
	from := origin(via[0].URL)
	if to := origin(req.URL); to != from {
		return &RedirectError{Status: status, From: from, To: Excerpt(to, maxOriginText)}
	}
	if len(via) >= MaxRedirects {
		return &RedirectError{Status: status, From: from, To: fmt.Sprintf("a %d-th redirect", len(via)+1)}
	}
	return nil
}

// HTTPClient returns a copy of hc (nil means a new http.Client) that
// redirects by CheckRedirect before any policy hc has of its own. The
// integration clients wrap whatever client they are given with it, so no
// caller can hand them one that follows redirects elsewhere.
func HTTPClient(hc *http.Client) *http.Client {
	if hc == nil {
		hc = &http.Client{}
	}
	out := *hc
	own := hc.CheckRedirect
	out.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := CheckRedirect(req, via); err != nil {
			return err
		}
		if own != nil {
			return own(req, via)
		}
		return nil
	}
	return &out
}

// maxOriginText bounds a redirect target's origin in error text.
const maxOriginText = 120

// origin is u's scheme://host:port, lower case, with the scheme's default
// port filled in.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// RedirectRefusal returns the RedirectError inside err, an error of
// http.Client.Do, or nil. The clients report it instead of the http.Client's
// error, whose text repeats the Location header as the server sent it.
func RedirectRefusal(err error) *RedirectError {
	var rerr *RedirectError
	if errors.As(err, &rerr) {
		return rerr
	}
	return nil
}
