package syncnow

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

func TestRequestOf(t *testing.T) {
	at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		ann         map[string]string
		deleted     bool
		ok          bool
		at          time.Time
		mode        v1alpha1.SyncMode
		invalidName string
	}{
		{name: "none", ann: nil},
		{name: "blank", ann: map[string]string{v1alpha1.SyncRequestedAtAnnotation: " "}},
		{name: "full by default", ann: map[string]string{v1alpha1.SyncRequestedAtAnnotation: "2026-05-04T10:00:00Z"}, ok: true, at: at, mode: v1alpha1.SyncModeFull},
		{name: "fractions and zones, to the second", ann: map[string]string{v1alpha1.SyncRequestedAtAnnotation: "2026-05-04T12:00:00.75+02:00"}, ok: true, at: at, mode: v1alpha1.SyncModeFull},
		{name: "incremental", ann: map[string]string{v1alpha1.SyncRequestedAtAnnotation: "2026-05-04T10:00:00Z", v1alpha1.SyncModeAnnotation: "incremental"},
			ok: true, at: at, mode: v1alpha1.SyncModeIncremental},
		{name: "not a time", ann: map[string]string{v1alpha1.SyncRequestedAtAnnotation: "now"}, ok: true, invalidName: v1alpha1.SyncRequestedAtAnnotation},
		{name: "a date only", ann: map[string]string{v1alpha1.SyncRequestedAtAnnotation: "2026-05-04"}, ok: true, invalidName: v1alpha1.SyncRequestedAtAnnotation},
		{name: "unknown mode", ann: map[string]string{v1alpha1.SyncRequestedAtAnnotation: "2026-05-04T10:00:00Z", v1alpha1.SyncModeAnnotation: "Full"},
			ok: true, invalidName: v1alpha1.SyncModeAnnotation},
		{name: "being deleted", ann: map[string]string{v1alpha1.SyncRequestedAtAnnotation: "2026-05-04T10:00:00Z"}, deleted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Annotations: tc.ann}}
			if tc.deleted {
				src.DeletionTimestamp = &metav1.Time{Time: at}
			}
			r, ok := requestOf(src)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if tc.invalidName != "" {
				if !strings.Contains(r.invalid, "annotation "+tc.invalidName+":") {
					t.Fatalf("invalid %q, want it to name %s", r.invalid, tc.invalidName)
				}
				return
			}
			if r.invalid != "" || !r.at.Equal(tc.at) || r.mode != tc.mode {
				t.Fatalf("request %+v, want %s %s", r, tc.at, tc.mode)
			}
		})
	}
}

func TestSettled(t *testing.T) {
	at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	rec := func(at time.Time, r v1alpha1.SyncRequestResult) *v1alpha1.SyncRequestStatus {
		return &v1alpha1.SyncRequestStatus{RequestedAt: &metav1.Time{Time: at}, Result: r}
	}
	valid := request{at: at, mode: v1alpha1.SyncModeFull}
	invalid := request{invalid: "annotation x: bad"}
	for _, tc := range []struct {
		name string
		rec  *v1alpha1.SyncRequestStatus
		r    request
		want bool
	}{
		{"no record", nil, valid, false},
		{"the same request done", rec(at, v1alpha1.SyncRequestAccepted), valid, true},
		{"the same request not connected", rec(at, v1alpha1.SyncRequestNotConnected), valid, true},
		{"the same request deferred", rec(at, v1alpha1.SyncRequestDeferred), valid, false},
		{"an older request", rec(at.Add(time.Second), v1alpha1.SyncRequestAccepted), valid, true},
		{"a newer request", rec(at.Add(-time.Second), v1alpha1.SyncRequestAccepted), valid, false},
		{"after an invalid one", &v1alpha1.SyncRequestStatus{Result: v1alpha1.SyncRequestInvalid, Message: "annotation x: bad"}, valid, false},
		{"the same invalid one", &v1alpha1.SyncRequestStatus{Result: v1alpha1.SyncRequestInvalid, Message: "annotation x: bad"}, invalid, true},
		{"another invalid one", &v1alpha1.SyncRequestStatus{Result: v1alpha1.SyncRequestInvalid, Message: "annotation y: bad"}, invalid, false},
		{"invalid after a valid one", rec(at, v1alpha1.SyncRequestAccepted), invalid, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := settled(tc.rec, tc.r); got != tc.want {
				t.Fatalf("settled = %v, want %v", got, tc.want)
			}
		})
	}
}
