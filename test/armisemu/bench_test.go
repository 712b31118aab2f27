package armisemu

import (
	"fmt"
	"testing"
)

// BenchmarkSearchPage measures rendering one page of 1000 devices.
func BenchmarkSearchPage(b *testing.B) {
	s := New(Options{Seed: 1, Devices: 1_000_000})
	q, err := parseAQL("in:devices", s.inv.epoch)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.searchPage(searchParams{q: q, from: (i * 1000) % 999_000, length: 1000, order: orderByID}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFilteredSelection measures the one-off scan a filtered query
// costs on a 1,000,000-device inventory.
func BenchmarkFilteredSelection(b *testing.B) {
	for _, order := range []string{orderByID, orderByLastSeen} {
		b.Run(fmt.Sprintf("orderBy=%s", order), func(b *testing.B) {
			s := New(Options{Seed: 1, Devices: 1_000_000})
			q, err := parseAQL(`in:devices timeFrame:"7 Days"`, s.inv.epoch)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				_ = s.inv.selectMatching(q, order)
			}
		})
	}
}
