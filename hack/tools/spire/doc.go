// Package tools pins spire-server and spire-agent, built for tests.
package tools
