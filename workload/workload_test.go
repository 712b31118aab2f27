package workload_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/serviceradar/sync-operator/workload"
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Object names are injective: parts that join to the same string, and long
// parts that share their first characters, give different names.
func TestNamesAreInjective(t *testing.T) {
	long := strings.Repeat("x", 70)
	cases := []struct {
		name string
		a, b []string
	}{
		{"the same join of different parts", []string{"sync", "a-b", "c"}, []string{"sync", "a", "b-c"}},
		{"a platform worker and another SyncService's worker", []string{"sync", "platform-sync", "acme"}, []string{"sync", "platform", "sync-acme"}},
		{"long parts with a common prefix", []string{"sync", long + "1", "acme"}, []string{"sync", long + "2", "acme"}},
		{"long tenants with a common prefix", []string{"sync", "s", strings.Repeat("t", 60) + "a"}, []string{"sync", "s", strings.Repeat("t", 60) + "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := workload.Name(tc.a...), workload.Name(tc.b...)
			if a == b {
				t.Fatalf("%v and %v are both named %q", tc.a, tc.b, a)
			}
			for _, n := range []string{a, b} {
				if len(n) > 63 || !dnsLabel.MatchString(n) {
					t.Fatalf("name %q is not a DNS label", n)
				}
			}
		})
	}
	// The hash that makes them so is long enough to rely on: 64 bits.
	n := workload.Name("sync", "platform-sync", "acme")
	if i := strings.LastIndex(n, "-"); len(n)-i-1 < 16 {
		t.Fatalf("name %q carries a hash of fewer than 64 bits", n)
	}
}
