package netboxemu

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// benchmarkList measures serving one 1000-row page of path from a
// 1,000,000-device inventory.
func benchmarkList(b *testing.B, path string) {
	s := New(Options{Seed: 1, Devices: 1_000_000})
	auth := "Token " + s.V1Token()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest(http.MethodGet, "http://netbox.test"+path+"?limit=1000&offset="+strconv.Itoa((i*1000)%999_000), nil)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// BenchmarkDevicePage measures a page of 1000 devices.
func BenchmarkDevicePage(b *testing.B) { benchmarkList(b, DevicesPath) }

// BenchmarkInterfacePage measures a page of 1000 interfaces.
func BenchmarkInterfacePage(b *testing.B) { benchmarkList(b, InterfacesPath) }

// BenchmarkFilteredSelection measures the one-off scan a device filter costs
// on a 1,000,000-device inventory.
func BenchmarkFilteredSelection(b *testing.B) {
	s := New(Options{Seed: 1, Devices: 1_000_000})
	for i := 0; b.Loop(); i++ {
		s.results = ordinals.NewCache(8) // a cold cache each time
		if _, err := s.MatchingDeviceIDs("status=active&site=dc-east"); err != nil {
			b.Fatal(err)
		}
	}
}
