package apifault

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusCreated, []byte(`{"a":1}`))
	if rec.Code != http.StatusCreated || rec.Body.String() != `{"a":1}` ||
		rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Content-Length") != "7" {
		t.Fatalf("answer %d %q with header %v", rec.Code, rec.Body, rec.Header())
	}
}

func TestKeepFields(t *testing.T) {
	const obj = `{"id":7,"name":"sw-1","tags":[{"id":1}],"site":{"id":2,"name":"hq"},"ip":null}`
	cases := []struct {
		name string
		keep []string
		want string
	}{
		{"some, in the object's order", []string{"site", "id"}, `{"id":7,"site":{"id":2,"name":"hq"}}`},
		{"nested values kept whole", []string{"tags"}, `{"tags":[{"id":1}]}`},
		{"null kept", []string{"ip"}, `{"ip":null}`},
		{"all", []string{"id", "name", "tags", "site", "ip"}, obj},
		{"none", nil, `{}`},
		{"unknown names", []string{"nope"}, `{}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := KeepFields([]byte(obj), func(name string) bool { return slices.Contains(tc.keep, name) })
			if err != nil || string(got) != tc.want {
				t.Fatalf("KeepFields: %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestKeepFieldsRejectsBrokenJSON(t *testing.T) {
	keepAll := func(string) bool { return true }
	for _, raw := range []string{``, `{"id":`, `{"id":1,`} {
		if got, err := KeepFields([]byte(raw), keepAll); err == nil {
			t.Errorf("KeepFields(%q) = %s, want an error", raw, got)
		}
	}
}
