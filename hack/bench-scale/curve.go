package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A curve is one measured series of points: x is the load (tenants at
// once, devices in the inventory, tenant schemas) and each metric a value
// per point.
type curve struct {
	// name is the RESULT line's curve= and the plot's file name; title
	// heads the plot; xKey names x in RESULT lines, xName on the plot.
	name, title, xKey, xName string
	xs                       []float64
	metrics                  []metric
}

// A metric is one value per point of a curve.
type metric struct {
	// key prefixes its RESULT fields (<key>_shape, <key>_exponent, ...);
	// label titles its panel, with its unit.
	key, label string
	ys         []float64
	// perUnit: the metric is a cost of the whole load (a time), so its cost
	// per unit of x is meaningful: RESULT gives the ratio of that cost
	// between the largest and the smallest point.
	perUnit bool
}

// Growth classes: how a metric grows with the load, from the exponent k of
// y ~ x^k.
const (
	shapeFlat      = "flat"              // k < 0.3: does not grow with the load
	shapeSublinear = "sublinear"         // 0.3 <= k < 0.8
	shapeLinear    = "linear"            // 0.8 <= k <= 1.25
	shapeWorse     = "worse-than-linear" // k > 1.25
)

// classify names the growth class of exponent k.
func classify(k float64) string {
	switch {
	case k < 0.3:
		return shapeFlat
	case k < 0.8:
		return shapeSublinear
	case k <= 1.25:
		return shapeLinear
	default:
		return shapeWorse
	}
}

// growth is how ys grows with xs: overall is the exponent k of y ~ x^k
// between the smallest and the largest point (on log-log axes), steepest the
// largest exponent between two neighbouring points, and shape the class of
// steepest, so that a curve that bends upwards only at its end is named by
// its end. ok is false with fewer than two points, or when a value is not
// positive (no exponent exists).
func growth(xs, ys []float64) (shape string, overall, steepest float64, ok bool) {
	if len(xs) < 2 || len(xs) != len(ys) {
		return "", 0, 0, false
	}
	for i := range xs {
		if xs[i] <= 0 || ys[i] <= 0 {
			return "", 0, 0, false
		}
	}
	exp := func(i, j int) float64 { return math.Log(ys[j]/ys[i]) / math.Log(xs[j]/xs[i]) }
	steepest = math.Inf(-1)
	for i := 1; i < len(xs); i++ {
		steepest = math.Max(steepest, exp(i-1, i))
	}
	overall = exp(0, len(xs)-1)
	return classify(steepest), overall, steepest, true
}

// unitCostRatio is the cost per unit of x at the largest point over that at
// the smallest: about 1 for a linear cost, below 1 for a flatter one, above
// 1 for a steeper one.
func unitCostRatio(xs, ys []float64) float64 {
	last := len(xs) - 1
	if last < 1 || ys[0] <= 0 || xs[last] <= 0 {
		return 0
	}
	return (ys[last] / xs[last]) / (ys[0] / xs[0])
}

// summary is the curve's RESULT line: each metric's shape and exponents.
func (c curve) summary(plot string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "RESULT curve=%s %s=%s", c.name, c.xKey, joinNumbers(c.xs))
	for _, m := range c.metrics {
		shape, overall, steepest, ok := growth(c.xs, m.ys)
		if !ok {
			fmt.Fprintf(&b, " %s_shape=n/a", m.key)
			continue
		}
		fmt.Fprintf(&b, " %s_shape=%s %s_exponent=%.2f %s_steepest_exponent=%.2f", m.key, shape, m.key, overall, m.key, steepest)
		if m.perUnit {
			fmt.Fprintf(&b, " %s_unit_cost_ratio=%.2f", m.key, unitCostRatio(c.xs, m.ys))
		}
	}
	if plot != "" {
		fmt.Fprintf(&b, " plot=%s", plot)
	}
	return b.String()
}

// joinNumbers is "1,10,100".
func joinNumbers(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = number(x)
	}
	return strings.Join(s, ",")
}

// number formats a value for RESULT lines and plot labels: integers as
// such, others with three significant digits.
func number(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// Plot geometry: one panel per metric, side by side.
const (
	panelW, panelH                     = 340, 250
	marginL, marginR, marginT, marginB = 62, 18, 58, 46
	headerH                            = 30
)

// svg draws the curve: one panel per metric, x on a logarithmic axis when
// the points span a decade or more, y linear from 0, each point labelled
// with its value, and the panel titled with the metric's shape.
func (c curve) svg() []byte {
	width := panelW * max(1, len(c.metrics))
	height := panelH + headerH
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", esc(c.title))
	logX := len(c.xs) > 1 && c.xs[0] > 0 && c.xs[len(c.xs)-1]/c.xs[0] >= 10
	for p, m := range c.metrics {
		c.panel(&b, p*panelW, headerH, m, logX)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// panel draws one metric at (ox, oy).
func (c curve) panel(b *bytes.Buffer, ox, oy int, m metric, logX bool) {
	x0, x1 := float64(ox+marginL), float64(ox+panelW-marginR)
	y0, y1 := float64(oy+panelH-marginB), float64(oy+marginT)
	title := m.label
	if shape, _, steepest, ok := growth(c.xs, m.ys); ok {
		title += fmt.Sprintf(" — %s (k=%.2f)", shape, steepest)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", ox+10, oy+22, esc(title))
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x0, y0, x1, y0)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x0, y0, x0, y1)
	fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, oy+panelH-8, esc(c.xName+axisNote(logX)))
	if len(c.xs) == 0 {
		return
	}
	lo, hi := c.xs[0], c.xs[len(c.xs)-1]
	xAt := func(x float64) float64 {
		if hi == lo {
			return (x0 + x1) / 2
		}
		if logX {
			return x0 + (x1-x0)*math.Log(x/lo)/math.Log(hi/lo)
		}
		return x0 + (x1-x0)*(x-lo)/(hi-lo)
	}
	top := niceCeil(maxOf(m.ys))
	yAt := func(y float64) float64 { return y0 - (y0-y1)*y/top }
	for _, t := range []float64{0, top / 2, top} {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, yAt(t), x1, yAt(t))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, yAt(t)+4, esc(number(t)))
	}
	var pts []string
	for i, x := range c.xs {
		px := xAt(x)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px, y0+14, esc(number(x)))
		if i >= len(m.ys) {
			continue
		}
		py := yAt(m.ys[i])
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="#1f77b4"/>`+"\n", px, py)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#1f77b4">%s</text>`+"\n", px, py-6, esc(number(m.ys[i])))
	}
	fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`+"\n", strings.Join(pts, " "))
}

func axisNote(logX bool) string {
	if logX {
		return " (log scale)"
	}
	return ""
}

// niceCeil is the smallest of 1, 2, 2.5 or 5 times a power of ten that is
// at least v (1 for v <= 0): the top of a y axis.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, f := range []float64{1, 2, 2.5, 5, 10} {
		if f*p >= v {
			return f * p
		}
	}
	return 10 * p
}

func maxOf(ys []float64) float64 {
	m := 0.0
	for _, y := range ys {
		m = math.Max(m, y)
	}
	return m
}

// esc escapes text for SVG.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// write saves the curve's plot as <dir>/<name>.svg and returns its path.
func (c curve) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // plots for the README
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	path := filepath.Join(dir, c.name+".svg")
	if err := os.WriteFile(path, c.svg(), 0o644); err != nil { //nolint:gosec // a plot for the README
		return "", fmt.Errorf("writing the plot: %w", err)
	}
	return path, nil
}
