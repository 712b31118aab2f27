package events_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sevents "k8s.io/client-go/tools/events"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/events"
	"github.com/serviceradar/sync-operator/gateway/store"
)

// recorded drains what a fake recorder got: "<type> <reason> <note>" lines.
func recorded(f *k8sevents.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-f.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestRunFinished(t *testing.T) {
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "inv", UID: "u1"}}
	for _, tc := range []struct {
		name string
		run  store.RunRecord
		want string // "" for no event
	}{
		{"changed", store.RunRecord{RunID: "r1", Mode: "full", Devices: 5, Created: 2, Unchanged: 3}, "Normal RunCompleted Run r1 (full) completed: fetched 5, created 2"},
		{"retracted only", store.RunRecord{RunID: "r2", Mode: "full", Devices: 3, Unchanged: 3, Retracted: 1}, "Normal RunCompleted"},
		{"nothing changed", store.RunRecord{RunID: "r3", Mode: "incremental", Devices: 3, Unchanged: 3}, ""},
		{"failed", store.RunRecord{RunID: "r4", Error: "GET https://user:pw@netbox.example/api: 401"}, "Warning RunFailed Run r4 (unknown) failed"},
		{"partial", store.RunRecord{RunID: "r5", Devices: 2, Created: 2, Error: "page 3: 500 from https://netbox.example"}, "Warning RunPartial Run r5 (unknown) was partial"},
		{"refused updates", store.RunRecord{RunID: "r6", Devices: 2, Refused: 1, RefusedReason: "NUL"}, "Warning RunPartial"},
		{"held", store.RunRecord{RunID: "r7", Mode: "full", Devices: 1, Held: &store.Held{Devices: 9, Of: 10, Limit: 20, State: store.HeldState}},
			"Warning RetractionHeld Run r7 would retract 9 of the source's 10 available devices, more than maxRetractPercent 20%"},
		{"held then superseded", store.RunRecord{RunID: "r8", Held: &store.Held{Devices: 9, Of: 10, Limit: 20, State: store.SupersededState}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := k8sevents.NewFakeRecorder(10)
			events.NewWithRecorder(f, events.Options{}).RunFinished(src, tc.run)
			got := recorded(f)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("events %q, want none", got)
				}
				return
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
				t.Fatalf("events %q, want one starting %q", got, tc.want)
			}
			// A worker's error (which may carry an endpoint) stays on status.
			if strings.Contains(got[0], "netbox.example") || strings.Contains(got[0], "pw@") {
				t.Fatalf("event %q carries the run's error", got[0])
			}
		})
	}
}

func TestRateLimitPerObjectAndReason(t *testing.T) {
	f := k8sevents.NewFakeRecorder(100)
	dropped := 0
	r := events.NewWithRecorder(f, events.Options{Limit: events.Limit{Burst: 3, Every: time.Hour}, Dropped: func() { dropped++ }})
	a := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "a", UID: "a"}}
	b := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "b", UID: "b"}}
	failed := store.RunRecord{RunID: "r", Error: "x"}
	for range 10 {
		r.RunFinished(a, failed)
	}
	r.RunFinished(a, store.RunRecord{RunID: "r", Devices: 1, Created: 1}) // another reason: its own bucket
	r.RunFinished(b, failed)                                              // another object: its own bucket
	got := recorded(f)
	if len(got) != 5 || dropped != 7 {
		t.Fatalf("%d events recorded, %d dropped; want 5 (3 of a's failures, its completion, b's failure) and 7: %q", len(got), dropped, got)
	}
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "edge", UID: "s"}}
	r.CertificateRefused(ss, "it was revoked")
	if got := recorded(f); len(got) != 1 || !strings.HasPrefix(got[0], "Warning CertificateRefused Refused an edge certificate of this SyncService: it was revoked") {
		t.Fatalf("certificate event %q", got)
	}
	// A refused caller's lookups are limited by its identity.
	allowed := 0
	for range 5 {
		if r.CertificateAllowed("edge-1.default.acme.serviceradar") {
			allowed++
		}
	}
	if allowed != 3 || !r.CertificateAllowed("edge-2.default.acme.serviceradar") {
		t.Fatalf("%d lookups of one refused identity allowed, want 3, and another identity's allowed", allowed)
	}
	var nilRecorder *events.Recorder
	if nilRecorder.CertificateAllowed("x") {
		t.Fatal("a nil recorder allows lookups")
	}
	nilRecorder.RunFinished(a, failed) // no recorder: nothing, no panic
}
