// Package test holds the end-to-end tests, the emulators of the outside APIs,
// and the harnesses (kubetest, pgtest) that start real services for tests.
package test

import (
	"path/filepath"
	"runtime"
)

// RepoRoot is the root of the repository, found from this file's location so
// that tests work from any package directory.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("test: cannot locate the repository root")
	}
	return filepath.Dir(filepath.Dir(file))
}
