// Package tools pins golangci-lint.
package tools
