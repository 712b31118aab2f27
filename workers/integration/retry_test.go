package integration_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/workers/integration"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 12 ", 12 * time.Second},
		{"0", 0},
		{"-4", 0},
		{"soon", 0},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999999999", integration.MaxRetryAfter},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), integration.MaxRetryAfter},
	}
	for _, tc := range cases {
		if got := integration.RetryAfter(tc.header, now); got != tc.want {
			t.Errorf("RetryAfter(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}
