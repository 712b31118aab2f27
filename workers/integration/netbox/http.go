package netbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/serviceradar/sync-operator/workers/integration"
)

// Failure kinds reported to the Observer.
const (
	kindAuth        = "auth"
	kindRateLimited = "rate_limited"
	kindServer      = "server"
	kindNetwork     = "network"
	kindDecode      = "decode"
)

// maxPageBytes bounds one answer; a full page of 1000 devices is a few MiB.
// Its items are bounded too, by integration.PageItemLimit of the page size
// asked for.
const maxPageBytes = 64 << 20

// maxErrorBody bounds what is kept of a refusal's body.
const maxErrorBody = 64 << 10

// requestError is one failed attempt: how to count it and whether to retry.
type requestError struct {
	kind       string
	status     int
	retry      bool
	retryAfter time.Duration
	// body is the start of a 400 answer, which names the refused values.
	body string
	err  error
}

func (e *requestError) Error() string { return e.err.Error() }

func (e *requestError) Unwrap() error { return e.err }

// list is a decoded page of a NetBox list. count is null with cursor
// paging (NetBox 4.6 start=).
type list[T any] struct {
	count   *int64
	next    *string
	results []T
}

// item is a pointer to a list element, which says whether it is usable.
type item[T any] interface {
	*T
	valid() error
}

// getPage fetches and decodes one list page, with retries. pageSize is the
// page size asked for: a page holding more than integration.PageItemLimit of
// it is refused as soon as its results list grows past that, and not asked
// for again.
func getPage[T any, P item[T]](ctx context.Context, c *Client, target string, pageSize int) (list[T], error) {
	var out list[T]
	err := c.get(ctx, target, func(body io.Reader) error {
		// NetBox's list answer: previous is not needed; count is null with
		// cursor paging. Items are decoded and checked one by one as they
		// arrive.
		var (
			p          list[T]
			hasResults bool
		)
		limit := integration.PageItemLimit(pageSize)
		_, err := integration.DecodeObject(json.NewDecoder(body), integration.Members{
			"count": func(dec *json.Decoder) error { return dec.Decode(&p.count) },
			"next":  func(dec *json.Decoder) error { return dec.Decode(&p.next) },
			"results": func(dec *json.Decoder) error {
				p.results = p.results[:0]
				var err error
				hasResults, err = integration.DecodeList(dec, limit, func(v *T) error {
					if err := P(v).valid(); err != nil {
						return err
					}
					p.results = append(p.results, *v)
					return nil
				})
				return err //nolint:wrapcheck // DecodeObject names the member
			},
		})
		switch {
		case errors.Is(err, integration.ErrPageTooLarge):
			return fmt.Errorf("page size %d: %w", pageSize, err)
		case err != nil:
			return fmt.Errorf("decoding the page: %w", err)
		case !hasResults:
			return errors.New("the page has no results list")
		}
		out = p
		return nil
	})
	return out, err
}

// get requests target until it succeeds, a failure is not worth retrying,
// or the attempts run out. Every failed attempt is reported to the Observer.
func (c *Client) get(ctx context.Context, target string, decode func(io.Reader) error) error {
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = DefaultMaxAttempts
	}
	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, target, decode)
		if err == nil {
			return nil
		}
		var re *requestError
		if !errors.As(err, &re) {
			return err // cancelled, or a request that cannot be built
		}
		c.obs.Failure(re.kind)
		if !re.retry {
			return err
		}
		if attempt >= attempts {
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		if err := c.sleep(ctx, c.delay(attempt, re.retryAfter)); err != nil {
			return fmt.Errorf("after %d attempts (last: %s): %w", attempt, re.Error(), err)
		}
	}
}

// attempt makes one request and decodes its answer.
func (c *Client) attempt(ctx context.Context, target string, decode func(io.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("before the request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, http.NoBody)
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("request abandoned: %w", ctxErr)
		}
		if rerr := integration.RedirectRefusal(err); rerr != nil {
			// Asking again is redirected again; the error is ours, not the
			// http.Client's, which repeats the Location header.
			return &requestError{kind: kindServer, status: rerr.Status, err: rerr}
		}
		return &requestError{kind: kindNetwork, retry: true, err: fmt.Errorf("request failed: %w", err)}
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		body := &readErrors{r: io.LimitReader(resp.Body, maxPageBytes)}
		err := decode(body)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("reading the answer abandoned: %w", ctx.Err())
		case body.err != nil:
			return &requestError{kind: kindNetwork, retry: true, err: fmt.Errorf("reading the answer: %w", body.err)}
		case errors.Is(err, integration.ErrPageTooLarge):
			// The same request gets the same page.
			return &requestError{kind: kindDecode, err: fmt.Errorf("answer refused: %w", err)}
		default:
			return &requestError{kind: kindDecode, retry: true, err: fmt.Errorf("malformed answer: %w", err)}
		}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return &requestError{kind: kindAuth, status: code, err: fmt.Errorf("%w: NetBox answered %d%s",
			integration.ErrCredentials, code, c.detail(resp))}
	case code == http.StatusTooManyRequests:
		return &requestError{kind: kindRateLimited, status: code, retry: true, retryAfter: c.retryAfter(resp.Header),
			err: fmt.Errorf("rate limited (%d)", code)}
	case code >= 500:
		return &requestError{kind: kindServer, status: code, retry: true, retryAfter: c.retryAfter(resp.Header),
			err: fmt.Errorf("server error %d%s", code, c.detail(resp))}
	default:
		// 400 (a filter NetBox refuses), 404 (no such endpoint) and the like:
		// asking again gets the same answer. A 400's body names the values
		// refused, which the caller may act on.
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		detail := ""
		if text := integration.ErrorText(bytes.NewReader(raw), resp.Header.Get("Content-Type"), c.token); text != "" {
			detail = ": " + text
		}
		return &requestError{kind: kindServer, status: code, body: string(raw),
			err: fmt.Errorf("NetBox refused the request with %d%s", code, detail)}
	}
}

// readErrors remembers a read error other than EOF, to tell a broken
// connection from a malformed body.
type readErrors struct {
	r   io.Reader
	err error
}

func (e *readErrors) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err //nolint:wrapcheck // a Reader must return io.EOF unwrapped
}

// detail is what an error answer's body may say in an error, as
// ": <text>", or "" when it says nothing usable: NetBox's {"detail": …} or
// a validation map, shortened to one clean line by integration.ErrorText;
// nothing of an HTML page. The token is redacted should a proxy ever echo
// it.
func (c *Client) detail(resp *http.Response) string {
	text := integration.ErrorText(resp.Body, resp.Header.Get("Content-Type"), c.token)
	if text == "" {
		return ""
	}
	return ": " + text
}

// retryAfter reads the Retry-After header against the client's clock.
func (c *Client) retryAfter(h http.Header) time.Duration {
	return integration.RetryAfter(h.Get("Retry-After"), c.now())
}

// delay is the wait before attempt+1: exponential from MinBackoff with
// jitter in [d/2, d] and at most MaxBackoff, or what Retry-After asked when
// that is longer (the header is capped at integration.MaxRetryAfter and the
// wait ends with the run).
func (c *Client) delay(attempt int, retryAfter time.Duration) time.Duration {
	lo, hi := c.MinBackoff, c.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	d = d/2 + rand.N(d/2+1) //nolint:gosec // jitter spreads retries; it needs no secure randomness
	return max(d, retryAfter)
}
