package armisemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/test/apifault"
)

// start serves a new emulator for the test and closes it at cleanup.
func start(t testing.TB, opts Options) (*Server, *apiClient) {
	t.Helper()
	s := New(opts)
	base := s.Start()
	t.Cleanup(s.Close)
	return s, &apiClient{base: base, hc: s.Client()}
}

// apiClient is a plain net/http client of the Armis API, as simple as a
// worker's would be.
type apiClient struct {
	base string
	hc   *http.Client
}

// reply is an apifault.Reply under the names the tests use.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (c *apiClient) do(ctx context.Context, req *http.Request) (reply, error) {
	rep, err := apifault.Do(c.hc, req.WithContext(ctx))
	return reply{status: rep.Status, header: rep.Header, body: rep.Body}, err
}

// tokenRequest exchanges secret in a form body.
func (c *apiClient) tokenRequest(ctx context.Context, secret string) (reply, error) {
	form := url.Values{"secret_key": {secret}}
	req, err := http.NewRequest(http.MethodPost, c.base+TokenPath, strings.NewReader(form.Encode()))
	if err != nil {
		return reply{}, fmt.Errorf("building token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(ctx, req)
}

type tokenAnswer struct {
	Data struct {
		AccessToken   string `json:"access_token"`
		ExpirationUTC string `json:"expiration_utc"`
	} `json:"data"`
	Success bool `json:"success"`
}

// token returns a fresh access token, failing the test otherwise.
func (c *apiClient) token(t testing.TB) string {
	t.Helper()
	rep, err := c.tokenRequest(context.Background(), DefaultSecretKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep.status != http.StatusOK {
		t.Fatalf("token exchange: status %d: %s", rep.status, rep.body)
	}
	var ans tokenAnswer
	if err := json.Unmarshal(rep.body, &ans); err != nil {
		t.Fatalf("decoding token answer %s: %v", rep.body, err)
	}
	return ans.Data.AccessToken
}

// search sends one search with the raw Authorization header auth.
func (c *apiClient) search(ctx context.Context, auth, aql string, from, length int, extra url.Values) (reply, error) {
	q := url.Values{"aql": {aql}, "from": {strconv.Itoa(from)}, "length": {strconv.Itoa(length)}}
	for k, v := range extra {
		q[k] = v
	}
	req, err := http.NewRequest(http.MethodGet, c.base+SearchPath+"?"+q.Encode(), nil)
	if err != nil {
		return reply{}, fmt.Errorf("building search request: %w", err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return c.do(ctx, req)
}

// page is a decoded search answer.
type page struct {
	Data struct {
		Count   int      `json:"count"`
		Next    *int     `json:"next"`
		Prev    *int     `json:"prev"`
		Results []Device `json:"results"`
		Total   int      `json:"total"`
	} `json:"data"`
	Success bool `json:"success"`
}

func decodePage(rep reply) (page, error) {
	return apifault.DecodeOK[page](rep.status, rep.body)
}

// fetchAll follows next from 0 until null, failing on any error; it returns
// the devices in order and the pages seen.
func (c *apiClient) fetchAll(t testing.TB, tok, aql string, length int, extra url.Values) ([]Device, []page) {
	t.Helper()
	var devs []Device
	var pages []page
	for from := 0; ; {
		rep, err := c.search(context.Background(), tok, aql, from, length, extra)
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodePage(rep)
		if err != nil {
			t.Fatalf("page from %d: %v", from, err)
		}
		pages = append(pages, p)
		devs = append(devs, p.Data.Results...)
		if p.Data.Next == nil {
			return devs, pages
		}
		if *p.Data.Next <= from {
			t.Fatalf("next %d does not advance from %d", *p.Data.Next, from)
		}
		from = *p.Data.Next
	}
}

func ids(devs []Device) []int {
	out := make([]int, len(devs))
	for i, d := range devs {
		out[i] = d.ID
	}
	return out
}
