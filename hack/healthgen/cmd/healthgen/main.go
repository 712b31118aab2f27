// Command healthgen writes the Argo CD health checks (healthgen.Files) into a
// folder, charts/sync-operator/argocd for `make manifests`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/serviceradar/sync-operator/hack/healthgen"
)

func main() {
	out := flag.String("out", "charts/sync-operator/argocd", "folder to write the health scripts and the argocd-cm patch into")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "healthgen:", err)
		os.Exit(1)
	}
}

// write renders the files and writes each one whose content changed.
func write(dir string) error {
	files, err := healthgen.Files()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := filepath.Join(dir, name)
		if old, err := os.ReadFile(path); err == nil && string(old) == string(files[name]) { //nolint:gosec // a file of the folder the command is told to write
			continue
		}
		if err := os.WriteFile(path, files[name], 0o644); err != nil { //nolint:gosec // a generated file of the repository
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return nil
}
