package runstatus

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/statusapply"
)

// DryRunFieldOwner suffixes the gateway's field manager for status.dryRun,
// which is applied apart from the run status Record writes (an apply by
// one manager drops the fields it no longer sets).
const DryRunFieldOwner = "-dry-run"

// RecordDryRun writes a dry run the gateway just evaluated, rec, to the
// source's status.dryRun.
func (w *Writer) RecordDryRun(ctx context.Context, key types.NamespacedName, sourceUID string, rec *store.DryRunRecord) error {
	var generation int64
	if w.Reader != nil {
		cur := &v1alpha1.IntegrationSource{}
		if err := w.Reader.Get(ctx, key, cur); err == nil && string(cur.UID) == sourceUID {
			generation = cur.Generation
		}
	}
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Status: v1alpha1.IntegrationSourceStatus{DryRun: DryRunStatus(rec, generation)}}
	if err := statusapply.Apply(ctx, w.Status, w.FieldOwner+DryRunFieldOwner, src); err != nil {
		return fmt.Errorf("recording dry run %s on IntegrationSource %s: %w", rec.RunID, key, err)
	}
	return nil
}

// DryRunStatus is a dry run as status.dryRun shows it; generation is the
// source's metadata.generation it was evaluated for (0: unknown).
func DryRunStatus(rec *store.DryRunRecord, generation int64) *v1alpha1.DryRunStatus {
	finished := metav1.NewTime(rec.Finished).Rfc3339Copy()
	result, errText := Result(rec.RunRecord)
	if rec.Held != nil {
		result = v1alpha1.SyncResultHeldRetraction
		errText = clip(fmt.Sprintf("the retraction brake would hold this run: it would retract %d of the source's %d available devices, "+
			"more than maxRetractPercent %d%%", rec.Held.Devices, rec.Held.Of, rec.Held.Limit))
	}
	return &v1alpha1.DryRunStatus{
		ID:                 rec.RunID,
		FinishedAt:         &finished,
		ObservedGeneration: generation,
		Result:             result,
		Error:              errText,
		Counts: v1alpha1.RunCounts{
			Fetched: int64(rec.Devices + rec.Refused), Created: int64(rec.Created), Updated: int64(rec.Updated),
			Unchanged: int64(rec.Unchanged), Merged: int64(rec.Merged), Retracted: int64(rec.Retracted), Refused: int64(rec.Refused),
		},
		Available: int64(rec.Available),
		Created:   rec.CreatedSample,
		Updated:   rec.UpdatedSample,
		Merged:    rec.MergedSample,
		Retracted: rec.RetractedSample,
	}
}
