// Package controllers holds one thin reconciler per kind. Each reads the
// cluster, asks small packages (platform, identity) for decisions, and writes
// only what changed, by server-side apply under the manager's field owner, so
// a steady state makes no writes and the gateway's status fields are never
// touched.
package controllers

import (
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FieldOwner is the server-side apply field manager of the manager. Status
// is written with statusapply.Apply under it: typed objects holding only
// the fields the manager owns.
const FieldOwner = "sync-operator-manager"

// newCondition is a condition of type typ, True when ok, for generation gen.
func newCondition(typ string, ok bool, reason, msg string, gen int64) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// setConditions sets want on a copy of existing with meta.SetStatusCondition
// (a condition whose status holds keeps its last transition time; one that
// changes status, or is new, gets now) and returns the wanted conditions as
// set, only them: the writer applies its own conditions, never another
// writer's. changed says whether any differs from existing in status,
// reason, message or observed generation.
func setConditions(existing []metav1.Condition, now time.Time, want ...metav1.Condition) (own []metav1.Condition, changed bool) {
	all := slices.Clone(existing)
	for _, c := range want {
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = metav1.NewTime(now)
		}
		if meta.SetStatusCondition(&all, c) {
			changed = true
		}
	}
	own = make([]metav1.Condition, 0, len(want))
	for _, c := range want {
		own = append(own, *meta.FindStatusCondition(all, c.Type))
	}
	return own, changed
}
