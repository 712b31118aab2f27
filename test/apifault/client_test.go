package apifault

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		w.Header().Set("X-Test", "yes")
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("short and stout"))
	}))
	defer ts.Close()

	req, err := http.NewRequest(http.MethodGet, ts.URL+"/tea", nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Do(ts.Client(), req)
	if err != nil || rep.Status != http.StatusTeapot || rep.Header.Get("X-Test") != "yes" || string(rep.Body) != "short and stout" {
		t.Fatalf("Do: %v, %+v", err, rep)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Do(ts.Client(), req); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "/slow") {
		t.Fatalf("Do past the deadline: %v, want deadline exceeded naming the request", err)
	}
}

func TestDecodeOK(t *testing.T) {
	type page struct {
		Count int `json:"count"`
	}
	cases := []struct {
		name    string
		status  int
		body    string
		want    int
		wantErr string
	}{
		{"200", http.StatusOK, `{"count":3}`, 3, ""},
		{"not 200", http.StatusInternalServerError, `{"count":3}`, 0, `status 500: {"count":3}`},
		{"truncated", http.StatusOK, `{"count":`, 0, "decoding page"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodeOK[page](tc.status, []byte(tc.body))
			if tc.wantErr == "" && (err != nil || p.Count != tc.want) {
				t.Fatalf("DecodeOK: %+v, %v; want count %d", p, err, tc.want)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("DecodeOK error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
