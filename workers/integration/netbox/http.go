package netbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/httpretry"
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
	retrier := httpretry.Retrier{Backoff: c.backoff(), Sleep: c.sleep}
	for {
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
		if !retrier.Failed() {
			return fmt.Errorf("giving up after %d attempts: %w", retrier.Failures(), err)
		}
		if err := retrier.Wait(ctx, re.retryAfter); err != nil {
			return fmt.Errorf("after %d attempts (last: %s): %w", retrier.Failures(), re.Error(), err)
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
		class := httpretry.ForTransport(err)
		if rerr := integration.RedirectRefusal(err); rerr != nil {
			// The error is ours, not the http.Client's, which repeats the
			// Location header.
			return &requestError{kind: class.Kind, status: rerr.Status, retry: class.Retry, err: rerr}
		}
		return &requestError{kind: class.Kind, retry: class.Retry, err: fmt.Errorf("request failed: %w", err)}
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode == http.StatusOK {
		body := &readErrors{r: io.LimitReader(resp.Body, maxPageBytes)}
		err := decode(body)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("reading the answer abandoned: %w", ctx.Err())
		}
		class := httpretry.ForDecode(err, body.err != nil)
		switch {
		case class.Kind == httpretry.KindNetwork:
			err = fmt.Errorf("reading the answer: %w", body.err)
		case !class.Retry: // a page refused for its length: the same request gets the same page
			err = fmt.Errorf("answer refused: %w", err)
		default:
			err = fmt.Errorf("malformed answer: %w", err)
		}
		return &requestError{kind: class.Kind, retry: class.Retry, err: err}
	}
	class := httpretry.ForStatus(resp, c.now())
	re := &requestError{kind: class.Kind, status: resp.StatusCode, retry: class.Retry, retryAfter: class.RetryAfter}
	switch code := resp.StatusCode; {
	case class.Kind == httpretry.KindAuth:
		re.err = fmt.Errorf("%w: NetBox answered %d%s", integration.ErrCredentials, code, c.detail(resp))
		return re
	case class.Kind == httpretry.KindRateLimited:
		re.err = fmt.Errorf("rate limited (%d)", code)
		return re
	case class.Retry:
		re.err = fmt.Errorf("server error %d%s", code, c.detail(resp))
		return re
	default:
		// 400 (a filter NetBox refuses), 404 (no such endpoint) and the like:
		// asking again gets the same answer. A 400's body names the values
		// refused, which the caller may act on.
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		detail := ""
		if text := integration.ErrorText(bytes.NewReader(raw), resp.Header.Get("Content-Type"), c.token); text != "" {
			detail = ": " + text
		}
		re.body, re.err = string(raw), fmt.Errorf("NetBox refused the request with %d%s", code, detail)
		return re
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
	return httpretry.RetryAfter(h.Get("Retry-After"), c.now())
}

// backoff is the client's retry policy (MinBackoff, MaxBackoff,
// MaxAttempts; zero fields take httpretry's defaults).
func (c *Client) backoff() httpretry.Backoff {
	return httpretry.Backoff{Min: c.MinBackoff, Max: c.MaxBackoff, Attempts: c.MaxAttempts}
}

// delay is the wait before attempt+1 (httpretry.Backoff.Delay): exponential
// from MinBackoff with jitter in [d/2, d] and at most MaxBackoff, or what
// Retry-After asked when that is longer (the header is capped at
// httpretry.MaxRetryAfter and the wait ends with the run).
func (c *Client) delay(attempt int, retryAfter time.Duration) time.Duration {
	return c.backoff().Delay(attempt, retryAfter, nil)
}
