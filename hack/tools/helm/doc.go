// Package tools pins helm, which the chart tests (test/helmtest) run as a subprocess.
package tools
