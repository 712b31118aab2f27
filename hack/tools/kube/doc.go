// Package tools pins the Kubernetes binaries built for tests and the demo.
package tools
