package pagesize_test

import (
	"testing"

	"github.com/serviceradar/sync-operator/wire/pagesize"
)

func TestResolve(t *testing.T) {
	l := pagesize.Limits{Default: 100, Max: 1000}
	cases := []struct {
		name      string
		requested int32
		want      int32
	}{
		{"unset", 0, 100},
		{"negative", -5, 100},
		{"the minimum", pagesize.Min, pagesize.Min},
		{"within", 250, 250},
		{"the maximum", 1000, 1000},
		{"above the maximum", 1001, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := l.Resolve(tc.requested); got != tc.want {
				t.Errorf("Resolve(%d) = %d, want %d", tc.requested, got, tc.want)
			}
		})
	}
}

func TestTable(t *testing.T) {
	for _, it := range pagesize.Types() {
		l, ok := pagesize.For(it)
		if !ok {
			t.Fatalf("For(%q) found nothing", it)
		}
		if l.Default < pagesize.Min || l.Default > l.Max || l.Max > pagesize.Largest() {
			t.Errorf("%s: default %d, max %d out of order (min %d, largest %d)", it, l.Default, l.Max, pagesize.Min, pagesize.Largest())
		}
	}
	if _, ok := pagesize.For("servicenow"); ok {
		t.Error("For found limits for an unknown type")
	}
}
