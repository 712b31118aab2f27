// Package version holds the build's version, stamped by the linker
// (-ldflags "-X github.com/serviceradar/sync-operator/version.Version=v1.2.3
// -X github.com/serviceradar/sync-operator/version.Commit=abc1234"); the
// binaries print it with --version.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set at build time.
var (
	Version = "dev"
	Commit  = ""
)

// String is "<binary> <version> (<commit>, <go version>)"; without a stamped
// commit, the VCS revision Go recorded in the binary is used.
func String(binary string) string {
	commit := Commit
	if commit == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					commit = s.Value[:12]
				}
			}
		}
	}
	if commit == "" {
		commit = "unknown commit"
	}
	return fmt.Sprintf("%s %s (%s, %s)", binary, Version, commit, runtime.Version())
}
