package store_test

import (
	"context"
	"testing"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// TestCacheEntriesSetting checks the one meaning of the device cache's size
// that --device-cache-entries, the chart's gateway.deviceCacheEntries,
// gateway/app's Config.DeviceCacheEntries and WithCacheEntries share: a
// bound in identifiers and device states, 0 (or a negative number)
// disabling the cache; without the option the store takes
// DefaultCacheEntries.
func TestCacheEntriesSetting(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	cases := []struct {
		name string
		opts []store.Option
		want int
	}{
		{"no option takes the default", nil, store.DefaultCacheEntries},
		{"zero disables", []store.Option{store.WithCacheEntries(0)}, 0},
		{"negative disables", []store.Option{store.WithCacheEntries(-1)}, 0},
		{"a bound", []store.Option{store.WithCacheEntries(150)}, 150},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.Open(context.Background(), dsn, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.CacheStats().Budget; got != tc.want {
				t.Errorf("cache budget %d, want %d", got, tc.want)
			}
		})
	}
}
