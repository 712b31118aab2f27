package identity_test

import (
	"testing"

	"github.com/serviceradar/sync-operator/identity"
)

// BenchmarkClassify measures classifying a verified chain (`make bench-identity`).
func BenchmarkClassify(b *testing.B) {
	c, _ := identity.NewClassifier("", "")
	svid := leaf("", "spiffe://serviceradar.local/sync/acme/default/worker-1")
	edge := leaf("edge-1.hq.acme.serviceradar")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		chain := svid
		if i%2 == 1 {
			chain = edge
		}
		if _, err := c.Classify(chain); err != nil {
			b.Fatal(err)
		}
	}
}
