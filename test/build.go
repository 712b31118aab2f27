package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildBinary builds one of the project's commands (pkg, such as
// "./cmd/gateway") into dir and returns its path, so that a test runs the
// binary users run. Build output goes to the test's standard error.
func BuildBinary(dir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir, build.Stdout, build.Stderr = RepoRoot(), os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building %s: %w", pkg, err)
	}
	return bin, nil
}
