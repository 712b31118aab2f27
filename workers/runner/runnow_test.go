package runner_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/test/segmentsink"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/runner"
)

// hourly is an Armis source of the emulator polled once an hour: every run
// after the first is one that RunNow asked for.
func (h *harness) hourly(uid string) bundle.Source {
	s := h.source(uid, 100, 2*time.Hour)
	s.PollIntervalSec = 3600
	return s
}

// mode is how a completed run fetched.
func mode(t *testing.T, r segmentsink.Run) string {
	t.Helper()
	m, ok := r.Complete()
	if !ok {
		t.Fatal("the run did not complete")
	}
	if m.Error != "" {
		t.Fatalf("run %s failed: %s", m.SyncRunID, m.Error)
	}
	return m.Mode
}

// runNow asks for a run and checks that the answer says want.
func runNow(t *testing.T, h *harness, uid string, m runner.Mode, at time.Time, want string) {
	t.Helper()
	msg, err := h.runner.RunNow(uid, m, at)
	if err != nil {
		t.Fatalf("RunNow(%s, %s, %s): %v", uid, m, at.Format(time.RFC3339), err)
	}
	if !strings.Contains(msg, want) {
		t.Fatalf("RunNow(%s, %s, %s) answered %q, want it to say %q", uid, m, at.Format(time.RFC3339), msg, want)
	}
}

// A request runs the source at once in the mode asked for, though its
// interval is an hour; the same request time again runs nothing.
func TestRunNowRunsAtOnceInTheModeAskedFor(t *testing.T) {
	h := start(t, armisemu.Options{Seed: 8, Devices: 500, Epoch: time.Now().Add(12 * time.Hour)}, time.Minute)
	h.apply(map[string]bundle.Source{"ns/a": h.hourly("uid-a")})
	if got := mode(t, h.completed(t, "uid-a", 1)[0]); got != results.ModeFull {
		t.Fatalf("the first run was %q, want full", got)
	}
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	runNow(t, h, "uid-a", runner.ModeIncremental, t0, "an incremental run")
	if got := mode(t, h.completed(t, "uid-a", 2)[1]); got != results.ModeIncremental {
		t.Fatalf("the requested incremental run was %q", got)
	}
	// Delivered again (another gateway replica, a retry): nothing more runs.
	runNow(t, h, "uid-a", runner.ModeFull, t0, "accepted before")
	runNow(t, h, "uid-a", runner.ModeFull, t0.Add(-time.Minute), "accepted before")
	// The next request is the next run: had the repeats queued one, this
	// one would join it and the third run would not be full.
	runNow(t, h, "uid-a", runner.ModeFull, t0.Add(time.Second), "")
	if got := mode(t, h.completed(t, "uid-a", 3)[2]); got != results.ModeFull {
		t.Fatalf("the requested full run was %q", got)
	}
	if o := h.sink.Overlaps(); len(o) > 0 {
		t.Errorf("runs of one source overlapped: %v", o)
	}
}

// Requests during a run wait for it and then run once: full when any of
// them asked for full.
func TestRunNowDuringARunCollapsesIntoOneRunAfterIt(t *testing.T) {
	// 60 pages of 50 ms: the first run lasts about 3 s.
	h := start(t, armisemu.Options{Seed: 9, Devices: 6000, Epoch: time.Now().Add(12 * time.Hour)}, time.Minute)
	h.emu.SetLatency(50 * time.Millisecond)
	h.apply(map[string]bundle.Source{"ns/a": h.hourly("uid-a")})
	deadline := time.Now().Add(time.Minute)
	for {
		runs := h.sink.Runs("uid-a")
		if len(runs) == 1 && len(runs[0].Segments) > 0 {
			if _, done := runs[0].Complete(); done {
				t.Fatal("the first run finished before the requests: make it longer")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first run did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	runNow(t, h, "uid-a", runner.ModeIncremental, t0, "in progress")
	runNow(t, h, "uid-a", runner.ModeFull, t0.Add(time.Second), "joined")
	runNow(t, h, "uid-a", runner.ModeIncremental, t0.Add(2*time.Second), "joined")
	runNow(t, h, "uid-a", runner.ModeIncremental, t0.Add(time.Second), "accepted before")
	h.emu.SetLatency(0)
	if got := mode(t, h.completed(t, "uid-a", 2)[1]); got != results.ModeFull {
		t.Fatalf("the run after the requests was %q, want full: one of them asked for full", got)
	}
	// Had the three requests queued more than one run, this request would
	// join a full one left over.
	runNow(t, h, "uid-a", runner.ModeIncremental, t0.Add(3*time.Second), "")
	if got := mode(t, h.completed(t, "uid-a", 3)[2]); got != results.ModeIncremental {
		t.Fatalf("the run after the collapsed one was %q, want the incremental one asked for", got)
	}
	if o := h.sink.Overlaps(); len(o) > 0 {
		t.Errorf("runs of one source overlapped: %v", o)
	}
}

// A source the worker does not run is refused, and the refusal says so.
func TestRunNowRefusesSourcesNotRun(t *testing.T) {
	h := start(t, armisemu.Options{Seed: 10, Devices: 10}, time.Minute)
	paused := h.hourly("uid-paused")
	paused.Paused = true
	h.apply(map[string]bundle.Source{"ns/a": h.hourly("uid-a"), "ns/p": paused})
	for _, uid := range []string{"uid-unknown", "uid-paused"} {
		if _, err := h.runner.RunNow(uid, runner.ModeFull, time.Now()); !errors.Is(err, runner.ErrNotRun) {
			t.Errorf("RunNow(%s) = %v, want ErrNotRun", uid, err)
		}
	}
	if _, err := h.runner.RunNow("uid-a", runner.ModeScheduled, time.Now()); err == nil {
		t.Error("RunNow with no mode was accepted")
	}
}
