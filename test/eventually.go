package test

import (
	"testing"
	"time"
)

// Eventually polls cond every 100 ms until it holds, and fails the test
// naming what did not happen when limit passes first. Tests wait for
// behaviour with it; they never assert durations.
func Eventually(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
