package netboxemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/test/apifault"
)

// start serves a new emulator for the test and closes it at cleanup. The
// client authenticates with the v1 token.
func start(t testing.TB, opts Options) (*Server, *apiClient) {
	t.Helper()
	s := New(opts)
	base := s.Start()
	t.Cleanup(s.Close)
	return s, &apiClient{base: base, hc: s.Client(), auth: "Token " + s.V1Token()}
}

// apiClient is a plain net/http client of the NetBox API.
type apiClient struct {
	base string
	hc   *http.Client
	auth string // the Authorization header, empty for none
}

// reply is an apifault.Reply under the names the tests use.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// get fetches target, a path under base or an absolute URL.
func (c *apiClient) get(ctx context.Context, target string) (reply, error) {
	if !strings.HasPrefix(target, "http") {
		target = c.base + target
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return reply{}, fmt.Errorf("building request for %s: %w", target, err)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	rep, err := apifault.Do(c.hc, req)
	return reply{status: rep.Status, header: rep.Header, body: rep.Body}, err
}

// page is a decoded list answer with raw results.
type page struct {
	Count    *int              `json:"count"`
	Next     *string           `json:"next"`
	Previous *string           `json:"previous"`
	Results  []json.RawMessage `json:"results"`
}

func decodePage(rep reply) (page, error) {
	return apifault.DecodeOK[page](rep.status, rep.body)
}

// fetchAll follows next from target until null, failing on any error.
func (c *apiClient) fetchAll(t testing.TB, target string) ([]json.RawMessage, []page) {
	t.Helper()
	var results []json.RawMessage
	var pages []page
	for target != "" {
		rep, err := c.get(context.Background(), target)
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodePage(rep)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		pages = append(pages, p)
		results = append(results, p.Results...)
		if len(pages) > 100000 {
			t.Fatal("next never ends")
		}
		target = ""
		if p.Next != nil {
			target = *p.Next
		}
	}
	return results, pages
}

// decodeAll decodes raw objects into T.
func decodeAll[T any](t testing.TB, raws []json.RawMessage) []T {
	t.Helper()
	out := make([]T, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			t.Fatalf("decoding %s: %v", raw, err)
		}
	}
	return out
}

// idsOf returns the id field of each object.
func idsOf(t testing.TB, raws []json.RawMessage) []int {
	t.Helper()
	objs := decodeAll[struct {
		ID int `json:"id"`
	}](t, raws)
	out := make([]int, len(objs))
	for i, o := range objs {
		out[i] = o.ID
	}
	return out
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}
