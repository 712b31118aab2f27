package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// A metric's shape is the class of the exponent of its steepest step, so a
// curve that is linear but bends upwards at its end is worse than linear.
func TestGrowth(t *testing.T) {
	xs := []float64{1, 10, 100, 300}
	for _, tc := range []struct {
		name      string
		xs, ys    []float64
		shape     string
		overall   float64
		unitRatio float64
	}{
		{name: "flat", xs: xs, ys: []float64{100, 105, 110, 112}, shape: shapeFlat, overall: 0.02, unitRatio: 0.0037},
		{name: "sublinear", xs: xs, ys: []float64{1, 3.2, 10, 17.3}, shape: shapeSublinear, overall: 0.5, unitRatio: 0.058},
		{name: "linear", xs: xs, ys: []float64{2, 20, 200, 600}, shape: shapeLinear, overall: 1, unitRatio: 1},
		{name: "linear then worse at the end", xs: xs, ys: []float64{2, 20, 200, 1800}, shape: shapeWorse, overall: 1.19, unitRatio: 3},
		{name: "quadratic", xs: []float64{10, 100, 1000}, ys: []float64{1, 100, 10000}, shape: shapeWorse, overall: 2, unitRatio: 100},
		{name: "falling", xs: []float64{10, 100}, ys: []float64{5, 1}, shape: shapeFlat, overall: -0.7, unitRatio: 0.02},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shape, overall, _, ok := growth(tc.xs, tc.ys)
			if !ok || shape != tc.shape || math.Abs(overall-tc.overall) > 0.01 {
				t.Errorf("growth = %q, %.3f, %v; want %q, %.2f", shape, overall, ok, tc.shape, tc.overall)
			}
			if r := unitCostRatio(tc.xs, tc.ys); math.Abs(r-tc.unitRatio) > 0.01*math.Max(1, tc.unitRatio) {
				t.Errorf("unit cost ratio = %.4f, want %.4f", r, tc.unitRatio)
			}
		})
	}
}

// No exponent exists for one point, or for values that are not positive.
func TestGrowthUndefined(t *testing.T) {
	for _, tc := range []struct {
		name   string
		xs, ys []float64
	}{
		{name: "one point", xs: []float64{10}, ys: []float64{1}},
		{name: "a zero value", xs: []float64{1, 10}, ys: []float64{0, 3}},
		{name: "lengths differ", xs: []float64{1, 10}, ys: []float64{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if shape, _, _, ok := growth(tc.xs, tc.ys); ok {
				t.Errorf("growth = %q, want none", shape)
			}
		})
	}
}

// The RESULT line names each metric's shape, and the plot is well-formed
// SVG with one point per value, its text escaped.
func TestSummaryAndPlot(t *testing.T) {
	c := curve{name: "tenants", title: "a <title> & more", xKey: "tenants", xName: "tenants at once", xs: []float64{1, 10, 100},
		metrics: []metric{
			{key: "time", label: "time (s)", ys: []float64{0.5, 5, 50}, perUnit: true},
			{key: "rss", label: "RSS (MiB)", ys: []float64{100, 110, 120}},
			{key: "errors", label: "errors", ys: []float64{0, 0, 1}},
		}}
	got := c.summary("bin/bench-scale/tenants.svg")
	for _, want := range []string{"RESULT curve=tenants tenants=1,10,100", "time_shape=linear", "time_unit_cost_ratio=1.00",
		"rss_shape=flat", "errors_shape=n/a", "plot=bin/bench-scale/tenants.svg"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
	svg := c.svg()
	circles := 0
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the plot is not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "circle" {
			circles++
		}
	}
	if circles != 9 {
		t.Errorf("the plot has %d points, want 9", circles)
	}
	if !bytes.Contains(svg, []byte("a &lt;title&gt; &amp; more")) {
		t.Errorf("the title is not escaped:\n%s", svg)
	}
}

// Points are parsed into ascending distinct numbers; an empty flag skips
// the curve.
func TestPoints(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{in: "300,1,10,10", want: []int{1, 10, 300}},
		{in: "", want: nil},
		{in: " 5 , ", want: []int{5}},
		{in: "0", err: true},
		{in: "ten", err: true},
	} {
		got, err := points(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("points(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
