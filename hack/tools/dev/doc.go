// Package tools pins the code generators (controller-gen, protoc plugins).
package tools
