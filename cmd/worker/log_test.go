package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// The worker's --zap-* flags keep the meaning they had under
// controller-runtime: JSON at info level with RFC 3339 times by default,
// verbosity by name or number, console output, time encodings.
func TestLogFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		// shown and hidden are messages logged at V(level) that must or
		// must not appear.
		shown, hidden []int
		json          bool
		check         func(t *testing.T, line map[string]any)
	}{
		{name: "defaults", shown: []int{0}, hidden: []int{1}, json: true, check: func(t *testing.T, line map[string]any) {
			t.Helper()
			ts, _ := line["ts"].(string)
			if _, err := time.Parse(time.RFC3339, ts); err != nil || line["level"] != "info" || line["logger"] != "worker" {
				t.Fatalf("line %v: want an RFC 3339 ts, level info, logger worker", line)
			}
		}},
		{name: "debug", args: []string{"--zap-log-level=debug"}, shown: []int{0, 1}, hidden: []int{2}, json: true},
		{name: "numeric verbosity", args: []string{"--zap-log-level=3"}, shown: []int{0, 3}, hidden: []int{4}, json: true},
		{name: "error only", args: []string{"--zap-log-level=error"}, hidden: []int{0}, json: true},
		{name: "console", args: []string{"--zap-encoder=console"}, shown: []int{0}, hidden: []int{1}},
		{name: "development", args: []string{"--zap-devel"}, shown: []int{0, 1}, hidden: []int{2}},
		{name: "epoch times", args: []string{"--zap-time-encoding=epoch"}, shown: []int{0}, json: true, check: func(t *testing.T, line map[string]any) {
			t.Helper()
			if _, ok := line["ts"].(float64); !ok {
				t.Fatalf("ts %v (%T), want seconds as a number", line["ts"], line["ts"])
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var o logOptions
			fs := flag.NewFlagSet("worker", flag.ContinueOnError)
			o.bindFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			log := o.logger(&out).WithName("worker")
			for _, v := range append(append([]int{}, tc.shown...), tc.hidden...) {
				log.V(v).Info("message", "v", v)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if out.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tc.shown) {
				t.Fatalf("%d lines, want %d (V%v):\n%s", len(lines), len(tc.shown), tc.shown, out.String())
			}
			for _, l := range lines {
				var line map[string]any
				err := json.Unmarshal([]byte(l), &line)
				if tc.json != (err == nil) {
					t.Fatalf("line %q: JSON %v, want %v", l, err == nil, tc.json)
				}
				if tc.check != nil {
					tc.check(t, line)
				}
			}
		})
	}
}

// Errors carry their message under "error", as before.
func TestLogErrorsCarryTheError(t *testing.T) {
	var o logOptions
	var out bytes.Buffer
	o.logger(&out).Error(errors.New("gateway unreachable"), "worker stopped")
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line["error"] != "gateway unreachable" || line["level"] != "error" {
		t.Fatalf("error line %s (%v)", out.String(), err)
	}
}

func TestLogFlagsRefuseUnknownValues(t *testing.T) {
	for _, arg := range []string{"--zap-log-level=loud", "--zap-log-level=0", "--zap-log-level=-2", "--zap-encoder=xml",
		"--zap-stacktrace-level=sometimes", "--zap-time-encoding=sundial"} {
		var o logOptions
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.bindFlags(fs)
		if err := fs.Parse([]string{arg}); err == nil {
			t.Errorf("%s accepted", arg)
		}
	}
}
