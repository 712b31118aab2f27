package armis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/httpretry"
)

// Body limits: a page of the largest length (wire/pagesize) of devices with every field stays far below
// maxBody (and holds at most integration.PageItemLimit of the page length
// asked for); a token answer is a few hundred bytes; an error answer is
// only read for its message (integration.ErrorText).
const (
	maxBody      = 64 << 20
	maxTokenBody = 64 << 10
	drainLimit   = 64 << 10
)

// Token lifetime handling: refresh when less than a tenth of the lifetime or
// refreshMargin remains (never more than half the lifetime ahead), and assume
// unknownLifetime when the answer's expiry cannot be used.
const (
	refreshMargin   = 60 * time.Second
	unknownLifetime = 10 * time.Minute
)

// accessToken is the cached token; refreshAt is when it is renewed ahead of
// its expiry.
type accessToken struct {
	value     string
	refreshAt time.Time
}

// attemptError is one failed request. kind is the Observer's failure kind;
// credentials marks a refusal that no retry cures.
type attemptError struct {
	op          string
	kind        string
	status      int
	message     string
	retryAfter  time.Duration
	retryable   bool
	credentials bool
	err         error
}

func (e *attemptError) Error() string {
	var b strings.Builder
	if e.op != "" {
		b.WriteString(e.op)
		b.WriteString(": ")
	}
	b.WriteString(e.kind)
	if e.status != 0 {
		fmt.Fprintf(&b, ": status %d", e.status)
	}
	if e.message != "" {
		fmt.Fprintf(&b, ": %q", e.message)
	}
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(e.err.Error())
	}
	return b.String()
}

func (e *attemptError) Unwrap() error { return e.err }

// tokenAnswer is the token exchange's answer.
type tokenAnswer struct {
	Data *struct {
		AccessToken   string `json:"access_token"`
		ExpirationUTC string `json:"expiration_utc"`
	} `json:"data"`
	Success *bool `json:"success"`
}

// page is the data of one search answer.
type page struct {
	Count   int      `json:"count"`
	Next    *int     `json:"next"`
	Total   *int     `json:"total"`
	Results []device `json:"results"`
}

// searchAnswer is one search answer.
type searchAnswer struct {
	Data    *page `json:"data"`
	Success *bool `json:"success"`
}

// attempt requests one page with the cached token (exchanging the secret key
// first when needed), returning the token it used so a 401 drops just that
// one.
func (c *Client) attempt(ctx context.Context, q query, from, length int) (*page, string, *attemptError) {
	tok, aerr := c.token(ctx)
	if aerr != nil {
		return nil, "", aerr
	}
	params := url.Values{
		"aql":          {q.aql},
		"from":         {strconv.Itoa(from)},
		"length":       {strconv.Itoa(length)},
		"orderBy":      {"id"},
		"includeTotal": {"true"},
	}
	if c.searchField != "" {
		params.Set("fields", c.searchField)
	}
	var ans searchAnswer
	decode := func(r io.Reader) error { return decodeSearch(r, integration.PageItemLimit(length), &ans) }
	if aerr := c.do(ctx, http.MethodGet, c.searchURL+"?"+params.Encode(), nil, tok, decode); aerr != nil {
		return nil, tok, aerr
	}
	p, err := checkPage(&ans, from)
	if err != nil {
		return nil, tok, &attemptError{kind: httpretry.KindDecode, retryable: true, err: err}
	}
	return p, tok, nil
}

// decodeSearch reads a search answer from r item by item, refusing (with
// integration.ErrPageTooLarge) a results list longer than limit before
// holding more of it.
func decodeSearch(r io.Reader, limit int, ans *searchAnswer) error {
	dec := json.NewDecoder(r)
	_, err := integration.DecodeObject(dec, integration.Members{
		"data": func(dec *json.Decoder) error {
			p := &page{}
			ok, err := integration.DecodeObject(dec, integration.Members{
				"count": func(dec *json.Decoder) error { return dec.Decode(&p.Count) },
				"next":  func(dec *json.Decoder) error { return dec.Decode(&p.Next) },
				"total": func(dec *json.Decoder) error { return dec.Decode(&p.Total) },
				"results": func(dec *json.Decoder) error {
					p.Results = p.Results[:0]
					_, err := integration.DecodeList(dec, limit, func(d *device) error {
						p.Results = append(p.Results, *d)
						return nil
					})
					return err //nolint:wrapcheck // DecodeObject names the member
				},
			})
			ans.Data = nil
			if ok {
				ans.Data = p
			}
			return err //nolint:wrapcheck // DecodeObject names the member
		},
		"success": func(dec *json.Decoder) error { return dec.Decode(&ans.Success) },
	})
	return err //nolint:wrapcheck // do says what was being decoded
}

// checkPage refuses answers that decode but cannot be paged through.
func checkPage(ans *searchAnswer, from int) (*page, error) {
	switch {
	case ans.Data == nil:
		return nil, errors.New("answer has no data")
	case ans.Success != nil && !*ans.Success:
		return nil, errors.New("answer says success false")
	}
	p := ans.Data
	if p.Next != nil && (*p.Next <= from || len(p.Results) == 0) {
		return nil, fmt.Errorf("next offset %d does not advance past %d with %d results", *p.Next, from, len(p.Results))
	}
	return p, nil
}

// token returns the cached access token, or exchanges the secret key for a
// new one when there is none or it is due for refresh.
func (c *Client) token(ctx context.Context) (string, *attemptError) {
	c.mu.Lock()
	t := c.tok
	c.mu.Unlock()
	if t.value != "" && c.now().Before(t.refreshAt) {
		return t.value, nil
	}
	form := url.Values{CredentialSecretKey: {c.secret}}.Encode()
	var ans tokenAnswer
	decode := func(r io.Reader) error { return json.NewDecoder(io.LimitReader(r, maxTokenBody)).Decode(&ans) }
	if aerr := c.do(ctx, http.MethodPost, c.tokenURL, strings.NewReader(form), "", decode); aerr != nil {
		// Armis refuses a wrong or revoked secret key with 400 (401 and 403
		// come from proxies and older deployments): no retry or other query
		// cures it, so the pass stops as a credentials error.
		if aerr.status == http.StatusBadRequest || aerr.status == http.StatusUnauthorized || aerr.status == http.StatusForbidden {
			aerr.kind, aerr.credentials = httpretry.KindAuth, true
		}
		aerr.op = "token exchange"
		return "", aerr
	}
	if ans.Data == nil || ans.Data.AccessToken == "" || (ans.Success != nil && !*ans.Success) {
		return "", &attemptError{op: "token exchange", kind: httpretry.KindDecode, retryable: true, err: errors.New("answer carries no access token")}
	}
	now := c.now()
	t = accessToken{value: ans.Data.AccessToken, refreshAt: refreshAt(now, ans.Data.ExpirationUTC)}
	c.mu.Lock()
	c.tok = t
	c.mu.Unlock()
	return t.value, nil
}

// refreshAt is when a token issued at now with the given expiry is renewed:
// when less than a tenth of its lifetime or refreshMargin remains, but never
// more than half its lifetime early. An expiry that cannot be parsed, or lies
// in the past (clock skew), counts as unknownLifetime.
func refreshAt(now time.Time, expiration string) time.Time {
	lifetime := unknownLifetime
	if exp, ok := parseTime(expiration); ok && exp.After(now) {
		lifetime = exp.Sub(now)
	}
	margin := min(max(lifetime/10, refreshMargin), lifetime/2)
	return now.Add(lifetime - margin)
}

// dropToken forgets tok if it is still the cached token, so the next request
// exchanges the secret key again.
func (c *Client) dropToken(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok.value == tok {
		c.tok = accessToken{}
	}
}

// do sends one request and decodes a 200 answer's body with decode. Any
// other answer, a transport error, a refused redirect or an undecodable body
// is an attemptError; a page refused for its length is not retried.
func (c *Client) do(ctx context.Context, method, target string, body io.Reader, auth string, decode func(io.Reader) error) *attemptError {
	timeout := c.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, method, target, body)
	if err != nil {
		return &attemptError{kind: httpretry.KindNetwork, err: fmt.Errorf("building request: %w", err)}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if auth != "" {
		// Armis wants the raw token, with no scheme word.
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		class := httpretry.ForTransport(err)
		if rerr := integration.RedirectRefusal(err); rerr != nil {
			// The error is ours, not the http.Client's, which repeats the
			// Location header.
			return &attemptError{kind: class.Kind, retryable: class.Retry, err: rerr}
		}
		return &attemptError{kind: class.Kind, retryable: class.Retry, err: redactURLError(err)}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode == http.StatusOK {
		if err := decode(io.LimitReader(resp.Body, maxBody)); err != nil {
			// The request's own timeout ends a body read as a network failure.
			class := httpretry.ForDecode(err, reqCtx.Err() != nil)
			what := "decoding answer"
			if class.Kind == httpretry.KindNetwork {
				what = "reading answer"
			}
			return &attemptError{kind: class.Kind, retryable: class.Retry, err: fmt.Errorf("%s: %w", what, err)}
		}
		return nil
	}
	// A 401 is retried once with a new token (fetchPage); a 403 refuses the
	// credentials, which no retry cures. Other refusals (a 400 for bad AQL, a
	// 404 for a wrong endpoint) repeat identically: the page fails at once.
	class := httpretry.ForStatus(resp, c.now())
	return &attemptError{status: resp.StatusCode, message: c.errorMessage(resp), kind: class.Kind, retryable: class.Retry,
		retryAfter: class.RetryAfter, credentials: resp.StatusCode == http.StatusForbidden}
}

// errorMessage is what an error answer's body may say in an error: its
// "message" (or "detail" or "error") text, else a plain-text body, shortened to one
// clean line by integration.ErrorText, with the secret key and token
// removed in case a proxy echoed them; nothing of an HTML page.
func (c *Client) errorMessage(resp *http.Response) string {
	c.mu.Lock()
	tok := c.tok.value
	c.mu.Unlock()
	return integration.ErrorText(resp.Body, resp.Header.Get("Content-Type"), c.secret, url.QueryEscape(c.secret), tok)
}

// redactURLError keeps a transport error's operation and cause but drops the
// URL's query, which holds the AQL (no secret travels in URLs, but queries
// can be long).
func redactURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		short := *uerr
		if u, perr := url.Parse(uerr.URL); perr == nil {
			u.RawQuery = ""
			short.URL = u.String()
		}
		return &short
	}
	return err
}
