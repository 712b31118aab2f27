// Package edgemanifest tests the examples of config/edge that run a sync
// worker at an edge site from an extracted onboarding bundle: the Kubernetes
// manifest against a real API server under the restricted Pod Security
// Standard, and the systemd unit with systemd-analyze verify (skipped where
// systemd-analyze is not installed).
package edgemanifest
