// Package controllers holds one thin reconciler per kind. Each reads the
// cluster, asks small packages (platform, identity) for decisions, and writes
// only what changed, by server-side apply under the manager's field owner, so
// a steady state makes no writes and the gateway's status fields are never
// touched.
package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// FieldOwner is the server-side apply field manager of the manager.
const FieldOwner = "sync-operator-manager"

// condition builds a condition, keeping the last transition time of an
// existing one with the same status.
func condition(existing []metav1.Condition, typ string, ok bool, reason, msg string, gen int64) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	c := metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: metav1.Now()}
	if old := meta.FindStatusCondition(existing, typ); old != nil && old.Status == status {
		c.LastTransitionTime = old.LastTransitionTime
	}
	return c
}

// sameConditions reports whether every wanted condition is already present unchanged.
func sameConditions(existing, want []metav1.Condition) bool {
	for _, w := range want {
		old := meta.FindStatusCondition(existing, w.Type)
		if old == nil || old.Status != w.Status || old.Reason != w.Reason || old.Message != w.Message ||
			old.ObservedGeneration != w.ObservedGeneration {
			return false
		}
	}
	return true
}

// applyStatus server-side applies the given status fields (only those) of an
// object of this API under FieldOwner.
func applyStatus(ctx context.Context, c client.Client, kind string, obj client.Object, status any) error {
	return applyStatusAt(ctx, c, kind, obj, status, "")
}

// applyStatusIfCurrent is applyStatus with obj's resourceVersion as a
// precondition: a status computed from a stale read is refused (a Conflict)
// instead of overwriting what was written since.
func applyStatusIfCurrent(ctx context.Context, c client.Client, kind string, obj client.Object, status any) error {
	return applyStatusAt(ctx, c, kind, obj, status, obj.GetResourceVersion())
}

func applyStatusAt(ctx context.Context, c client.Client, kind string, obj client.Object, status any, resourceVersion string) error {
	raw, err := json.Marshal(status)
	if err != nil {
		return fmt.Errorf("encoding %s status: %w", kind, err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fmt.Errorf("encoding %s status: %w", kind, err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": fields}}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind(kind)
	u.SetName(obj.GetName())
	u.SetNamespace(obj.GetNamespace())
	u.SetResourceVersion(resourceVersion)
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s %s status: %w", kind, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}
