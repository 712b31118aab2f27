package integration_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/workers/integration"
)

// listPage is a page as the clients decode it: a next link and the items.
type listPage struct {
	present bool
	next    *string
	hasList bool
	ids     []int
}

func decodeListPage(body string, limit int) (listPage, error) {
	var p listPage
	dec := json.NewDecoder(strings.NewReader(body))
	var err error
	p.present, err = integration.DecodeObject(dec, integration.Members{
		"next": func(dec *json.Decoder) error { return dec.Decode(&p.next) },
		"results": func(dec *json.Decoder) error {
			p.ids = nil
			var err error
			p.hasList, err = integration.DecodeList(dec, limit, func(v *struct {
				ID int `json:"id"`
			}) error {
				if v.ID < 0 {
					return errors.New("negative id")
				}
				p.ids = append(p.ids, v.ID)
				return nil
			})
			return err
		},
	})
	return p, err
}

func TestDecodeListPage(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		limit   int
		want    listPage
		wantErr string
		tooMany bool
	}{
		{name: "page", body: `{"count":3,"next":"n","results":[{"id":1},{"id":2}],"extra":{"deep":[1,[2,{"x":"y"}]]}}`, limit: 4,
			want: listPage{present: true, next: ptr("n"), hasList: true, ids: []int{1, 2}}},
		{name: "names match ignoring case", body: `{"Results":[{"id":1}],"NEXT":null}`, limit: 4,
			want: listPage{present: true, hasList: true, ids: []int{1}}},
		{name: "exactly the limit", body: `{"results":[{"id":1},{"id":2}]}`, limit: 2,
			want: listPage{present: true, hasList: true, ids: []int{1, 2}}},
		{name: "one past the limit", body: `{"results":[{"id":1},{"id":2},{"id":3}]}`, limit: 2, tooMany: true, wantErr: "more than 2 items"},
		{name: "empty objects past the limit, never closed", body: `{"results":[{},{},{},{},{}` + strings.Repeat(`,{}`, 1000), limit: 3,
			tooMany: true, wantErr: "more than 3 items"},
		{name: "null results", body: `{"results":null}`, limit: 2, want: listPage{present: true}},
		{name: "null page", body: `null`, limit: 2},
		{name: "empty list", body: `{"results":[]}`, limit: 2, want: listPage{present: true, hasList: true}},
		{name: "a later results list replaces an earlier one", body: `{"results":[{"id":1},{"id":2}],"results":[{"id":3}]}`, limit: 2,
			want: listPage{present: true, hasList: true, ids: []int{3}}},
		{name: "item refused", body: `{"results":[{"id":1},{"id":-1}]}`, limit: 5, wantErr: `member "results": item 1: negative id`},
		{name: "results not a list", body: `{"results":{"id":1}}`, limit: 5, wantErr: "want a list or null, found an object"},
		{name: "page not an object", body: `[{"id":1}]`, limit: 5, wantErr: "want an object or null, found a list"},
		{name: "cut in half", body: `{"results":[{"id":1},{"id"`, limit: 5, wantErr: "item 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeListPage(tc.body, tc.limit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				if errors.Is(err, integration.ErrPageTooLarge) != tc.tooMany {
					t.Errorf("error %v: ErrPageTooLarge %v, want %v", err, !tc.tooMany, tc.tooMany)
				}
				if tc.tooMany && len(got.ids) > tc.limit {
					t.Errorf("kept %d items past the limit of %d", len(got.ids), tc.limit)
				}
				return
			}
			if err != nil {
				t.Fatalf("decoding: %v", err)
			}
			if got.present != tc.want.present || got.hasList != tc.want.hasList || !equalNext(got.next, tc.want.next) ||
				!slices.Equal(got.ids, tc.want.ids) {
				t.Errorf("decoded %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPageItemLimit(t *testing.T) {
	for _, tc := range []struct{ requested, want int }{{100, 200}, {1, 2}, {0, 2}, {5000, 10000}} {
		if got := integration.PageItemLimit(tc.requested); got != tc.want {
			t.Errorf("PageItemLimit(%d) = %d, want %d", tc.requested, got, tc.want)
		}
	}
}

func ptr(s string) *string { return &s }

func equalNext(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}
