// Package runstatus writes what the gateway knows of a source's runs to its
// IntegrationSource status: the last run (id, start, end, result, mode and
// what it changed), a bounded history of the runs before it, and the
// summary fields and Synced condition that printer columns and tools read.
// Everything is read back from the gateway's sync_runs table, the one
// record every replica shares, so a write is whole whatever replica or
// event (a run's end, a released retraction) causes it.
package runstatus

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/statusapply"
)

// Store reads a source's finished runs, newest first.
type Store interface {
	Runs(ctx context.Context, tenantSlug, sourceUID string, limit int) ([]store.RunRecord, error)
}

// Writer writes run status by server-side apply.
type Writer struct {
	// Status applies status; Reader is the informer cache the source's spec
	// (its history limit) and Synced condition are read from.
	Status client.Client
	Reader client.Reader
	Store  Store
	// FieldOwner is the gateway's field manager.
	FieldOwner string
}

// MaxError bounds the run errors written to status (the CRD's maxLength: a
// longer one would fail the whole write).
const MaxError = 1024

// Record writes the source's run status: its last finished runs as the
// store has them, and available, how many devices the source now reports
// available. A source that has no finished run is left alone.
func (w *Writer) Record(ctx context.Context, key types.NamespacedName, tenantSlug, sourceUID string, available int) error {
	limit := v1alpha1.DefaultHistoryLimit
	var src *v1alpha1.IntegrationSource
	if w.Reader != nil {
		cur := &v1alpha1.IntegrationSource{}
		if err := w.Reader.Get(ctx, key, cur); err == nil && string(cur.UID) == sourceUID {
			src = cur
			limit = cur.Spec.RunHistoryLimit()
		}
	}
	runs, err := w.Store.Runs(ctx, tenantSlug, sourceUID, limit)
	if err != nil {
		return fmt.Errorf("recording runs on IntegrationSource %s: %w", key, err)
	}
	if len(runs) == 0 {
		return nil
	}
	history := make([]v1alpha1.SyncRun, 0, len(runs))
	for _, r := range runs {
		history = append(history, RunStatus(r))
	}
	last := runs[0]
	result, errText := Result(last)
	finished := metav1.NewTime(last.Finished).Rfc3339Copy()
	var existing []metav1.Condition
	var generation int64
	if src != nil {
		existing, generation = src.Status.Conditions, src.Generation
	}
	obj := &v1alpha1.IntegrationSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Status: v1alpha1.IntegrationSourceStatus{
			LastSyncTime:      &finished,
			LastSyncResult:    result,
			DevicesDiscovered: int64(available),
			LastRunID:         last.RunID,
			LastError:         errText,
			LastRun:           &history[0],
			History:           history,
			Conditions:        []metav1.Condition{syncedCondition(existing, generation, last, result, errText, available)},
		},
	}
	// Zero devices and no error are recorded too: the gateway keeps owning
	// both fields, and the Devices column shows 0.
	if err := statusapply.Apply(ctx, w.Status, w.FieldOwner, obj, statusapply.WithZero("devicesDiscovered", "lastError")); err != nil {
		return fmt.Errorf("recording run %s: %w", last.RunID, err)
	}
	return nil
}

// Result is a run's result and its error as status shows them. A run
// without error succeeded (a full pass, or a pass over the changes since
// the last); one with an error failed, or was partial when it still
// delivered devices; devices the store refused make it partial whatever
// the worker said. A run whose retraction the brake held, and that no
// approval released, is HeldRetraction.
func Result(r store.RunRecord) (v1alpha1.SyncResult, string) {
	errText := r.Error
	if r.Refused > 0 {
		refused := fmt.Sprintf("device updates refused: %d (first: %s)", r.Refused, r.RefusedReason)
		if errText == "" {
			errText = refused
		} else {
			errText = refused + "; " + errText
		}
	}
	result := v1alpha1.SyncResultSuccess
	switch {
	case r.Held != nil && r.Held.State == store.HeldState:
		result = v1alpha1.SyncResultHeldRetraction
		errText = fmt.Sprintf("retraction held: the run would retract %d of the source's %d available devices, more than maxRetractPercent %d%%; "+
			"nothing was retracted. Approve it once with the annotation %s=%s", r.Held.Devices, r.Held.Of, r.Held.Limit,
			v1alpha1.ApproveRetractionAnnotation, r.RunID)
	case r.Held != nil && r.Held.State == store.SupersededState:
		result = v1alpha1.SyncResultHeldRetraction
		errText = fmt.Sprintf("retraction held (%d of %d devices, over maxRetractPercent %d%%), then superseded by a later full run; nothing was retracted",
			r.Held.Devices, r.Held.Of, r.Held.Limit)
	case errText != "" && r.Devices == 0:
		result = v1alpha1.SyncResultFailed
	case errText != "":
		result = v1alpha1.SyncResultPartial
	}
	return result, clip(errText)
}

// clip bounds an error to MaxError bytes of valid UTF-8.
func clip(s string) string {
	if len(s) <= MaxError {
		return s
	}
	return strings.ToValidUTF8(s[:MaxError-3], "") + "..."
}

// RunStatus is a run as status.lastRun and status.history show it.
func RunStatus(r store.RunRecord) v1alpha1.SyncRun {
	result, errText := Result(r)
	out := v1alpha1.SyncRun{
		ID:        r.RunID,
		StartTime: metav1.NewTime(r.Started).Rfc3339Copy(),
		EndTime:   metav1.NewTime(r.Finished).Rfc3339Copy(),
		Result:    result,
		Error:     errText,
		Counts: v1alpha1.RunCounts{
			Fetched: int64(r.Devices + r.Refused), Created: int64(r.Created), Updated: int64(r.Updated),
			Unchanged: int64(r.Unchanged), Merged: int64(r.Merged), Retracted: int64(r.Retracted), Refused: int64(r.Refused),
		},
	}
	switch mode := v1alpha1.SyncMode(r.Mode); {
	case mode == v1alpha1.SyncModeFull || mode == v1alpha1.SyncModeIncremental:
		out.Mode = mode
	case mode == "" && r.FullFetch:
		out.Mode = v1alpha1.SyncModeFull
	}
	if h := r.Held; h != nil {
		out.Retraction = &v1alpha1.HeldRetraction{Devices: int64(h.Devices), Of: int64(h.Of), MaxPercent: int32(h.Limit), State: state(h.State)} //nolint:gosec // a percentage
		if !h.Decided.IsZero() {
			decided := metav1.NewTime(h.Decided).Rfc3339Copy()
			out.Retraction.DecidedAt = &decided
		}
	}
	return out
}

func state(s string) v1alpha1.RetractionState {
	switch s {
	case store.ReleasedState:
		return v1alpha1.RetractionReleased
	case store.SupersededState:
		return v1alpha1.RetractionSuperseded
	}
	return v1alpha1.RetractionHeld
}

// syncedCondition is the IntegrationSource's Synced condition after a run
// (the gateway owns it; the manager owns Ready): True when the run
// succeeded, for the source's generation, set on the existing conditions
// with meta.SetStatusCondition, so that its transition time (the end of
// the run that changed its status) holds while its status does.
func syncedCondition(existing []metav1.Condition, generation int64, run store.RunRecord, result v1alpha1.SyncResult, errText string, available int) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionSynced, Status: metav1.ConditionTrue, Reason: v1alpha1.SyncedReason(result),
		ObservedGeneration: generation, LastTransitionTime: metav1.NewTime(run.Finished).Rfc3339Copy(),
		Message: fmt.Sprintf("run %s: %d devices reported (created %d, updated %d, unchanged %d, merged %d), %d retracted, %d available",
			run.RunID, run.Devices, run.Created, run.Updated, run.Unchanged, run.Merged, run.Retracted, available)}
	if result != v1alpha1.SyncResultSuccess {
		c.Status = metav1.ConditionFalse
		c.Message = fmt.Sprintf("run %s: %d devices reported: %s", run.RunID, run.Devices, errText)
	}
	all := slices.Clone(existing)
	meta.SetStatusCondition(&all, c)
	return *meta.FindStatusCondition(all, c.Type)
}
