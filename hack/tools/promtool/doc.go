// Package tools pins promtool, which the chart's alerting rule tests
// (test/helmtest) run as a subprocess (promtool test rules).
package tools
