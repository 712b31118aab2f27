package helmtest

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/gateway/store"
)

// TestDeviceCacheEntries checks that gateway.deviceCacheEntries renders into
// --device-cache-entries with the one meaning the gateway's flag and store
// give it: the chart's default is store.DefaultCacheEntries, and 0 is passed
// on as 0, which disables the cache (store.WithCacheEntries(0)).
func TestDeviceCacheEntries(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want int
	}{
		{"default", nil, store.DefaultCacheEntries},
		{"off", []string{"--set", "gateway.deviceCacheEntries=0"}, 0},
		{"a bound", []string{"--set", "gateway.deviceCacheEntries=150"}, 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rendered []string
			for _, a := range args(t, render(t, tc.set...), gateway) {
				if strings.HasPrefix(a, "--device-cache-entries=") {
					rendered = append(rendered, a)
				}
			}
			if want := []string{"--device-cache-entries=" + strconv.Itoa(tc.want)}; !slices.Equal(rendered, want) {
				t.Errorf("rendered %v, want %v", rendered, want)
			}
		})
	}
	_, errOut, err := helm(t, "template", releaseName, chartDir, "--namespace", namespace, "--set", "gateway.deviceCacheEntries=-1")
	if err == nil || !strings.Contains(errOut, "deviceCacheEntries") {
		t.Errorf("a negative gateway.deviceCacheEntries was not refused by the schema: %v\n%s", err, errOut)
	}
}
