package helmtest

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test"
)

// retentionArgs reads the gateway's --retention-* arguments into a
// store.Retention, and returns them as rendered.
func retentionArgs(t *testing.T, gwArgs []string) (store.Retention, []string) {
	t.Helper()
	var r store.Retention
	var rendered []string
	durations := map[string]*time.Duration{"interval": &r.Interval, "runs-age": &r.RunsAge, "segments-age": &r.SegmentsAge, "audit-age": &r.AuditAge}
	ints := map[string]*int{"batch-rows": &r.BatchRows, "runs-keep": &r.RunsKeep, "segments-keep-runs": &r.SegmentsKeepRuns, "audit-keep": &r.AuditKeep}
	for _, a := range gwArgs {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--retention-"), "=")
		if !ok || !strings.HasPrefix(a, "--retention-") {
			continue
		}
		rendered = append(rendered, a)
		if d, ok := durations[name]; ok {
			v, err := time.ParseDuration(value)
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			*d = v
			continue
		}
		n, ok := ints[name]
		if !ok {
			t.Fatalf("unknown argument %s", a)
		}
		v, err := strconv.Atoi(value)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		*n = v
	}
	if len(rendered) != len(durations)+len(ints) {
		t.Fatalf("retention arguments %v, want all %d", rendered, len(durations)+len(ints))
	}
	return r, rendered
}

// gateway.retention renders into the gateway's --retention-* flags: the
// chart's defaults are the gateway's, and the binary accepts what is
// rendered.
func TestRetentionValues(t *testing.T) {
	bin, err := test.BuildBinary(t.TempDir(), "./cmd/gateway")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  []string
		want store.Retention
	}{
		{"defaults", nil, store.DefaultRetention},
		{"off", []string{"--set", "gateway.retention.interval=0"}, func() store.Retention {
			r := store.DefaultRetention
			r.Interval = 0
			return r
		}()},
		{"audit kept, shorter windows", []string{"--set", "gateway.retention.audit.age=0", "--set", "gateway.retention.runs.age=240h",
			"--set", "gateway.retention.segments.age=24h", "--set", "gateway.retention.runs.keep=60", "--set", "gateway.retention.batchRows=500"},
			func() store.Retention {
				r := store.DefaultRetention
				r.AuditAge, r.RunsAge, r.SegmentsAge, r.RunsKeep, r.BatchRows = 0, 240*time.Hour, 24*time.Hour, 60, 500
				return r
			}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rendered := retentionArgs(t, args(t, render(t, tc.set...), gateway))
			if got != tc.want {
				t.Errorf("rendered %+v, want %+v", got, tc.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("the gateway refuses the rendered retention: %v", err)
			}
			if out, err := exec.Command(bin, append(rendered, "--version")...).CombinedOutput(); err != nil {
				t.Errorf("the gateway refuses %v: %v\n%s", rendered, err, out)
			}
		})
	}
}

func TestRetentionSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"no last run kept", []string{"--set", "gateway.retention.runs.keep=0"}, "keep"},
		{"age not a duration", []string{"--set", "gateway.retention.segments.age=7days"}, "age"},
		{"empty batches", []string{"--set", "gateway.retention.batchRows=0"}, "batchRows"},
		{"unknown table", []string{"--set", "gateway.retention.devices.age=1h"}, "devices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := helm(t, append([]string{"template", releaseName, chartDir, "--namespace", namespace}, tc.set...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want a schema error", tc.set)
			}
			if !strings.Contains(errOut, "schema") || !strings.Contains(errOut, "retention") || !strings.Contains(errOut, tc.want) {
				t.Errorf("error does not name retention and %q:\n%s", tc.want, errOut)
			}
		})
	}
}
