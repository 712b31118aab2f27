package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/gateway/store"
	pb "github.com/serviceradar/sync-operator/proto"
)

// StreamStatus ingests one segment of a sync run: every chunk is read and
// checked against the stream rules first, then the whole segment is applied
// in one transaction. A refused or cancelled call commits nothing.
func (s *Server) StreamStatus(stream pb.AgentGatewayService_StreamStatusServer) error {
	ctx := stream.Context()
	if s.o.Store == nil {
		return status.Error(codes.Unavailable, "this gateway has no device store configured")
	}
	call, err := ingest.Read(stream.Recv, s.o.Limits)
	if err != nil {
		if id, perr := s.peer(ctx); perr == nil {
			s.o.Log.Info("refused", "caller", id.String(), "code", status.Code(err).String(), "reason", status.Convert(err).Message())
		}
		return err
	}
	id, e, err := s.syncConfig(ctx, call.AgentID)
	if err != nil {
		return err
	}
	for i := range call.TenantIDs {
		if contradicts(call.TenantIDs[i], call.TenantSlugs[i], e.TenantID, id.TenantSlug) {
			return s.refuse(id, codes.PermissionDenied, "tenant fields in the request contradict the certificate")
		}
	}
	for _, agentID := range call.ServiceAgentIDs {
		if agentID != "" && agentID != id.ComponentID {
			return s.refuse(id, codes.PermissionDenied, "services[].agent_id does not match the certificate's component id")
		}
	}
	sources := map[string]ingest.Source{}
	keys := map[string]string{}
	for key, src := range e.Bundle.Sources {
		sources[src.IntegrationSourceUID] = ingest.Source{UID: src.IntegrationSourceUID, Integration: src.Type, Partition: src.Partition, SyncServiceID: src.SyncServiceID}
		keys[src.IntegrationSourceUID] = key
	}
	seg, err := ingest.Segment(call, e.TenantID, id.TenantSlug, sources, uuid.NewString)
	if err != nil {
		return s.refuse(id, status.Code(err), "%s", status.Convert(err).Message())
	}
	applied, err := s.o.Store.ApplySegment(ctx, seg)
	switch {
	case errors.Is(err, store.ErrRunSource):
		return s.refuse(id, codes.InvalidArgument, "sync_run_id belongs to another source")
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err() //nolint:wrapcheck // a gRPC status
	case err != nil:
		s.o.Log.Error(err, "applying a segment", "caller", id.String(), "run", seg.RunID, "segment", seg.Segment)
		return status.Error(codes.Unavailable, "applying the segment failed; send it again")
	}
	s.o.Log.V(1).Info("segment applied", "caller", id.String(), "run", seg.RunID, "segment", seg.Segment,
		"devices", applied.Devices, "merges", applied.Merges, "duplicate", applied.Duplicate)
	if applied.Run != nil {
		if err := s.recordRun(ctx, keys[seg.SourceUID], applied.Run); err != nil {
			s.o.Log.Error(err, "recording run status", "caller", id.String(), "run", seg.RunID)
		}
	}
	return stream.SendAndClose(&pb.GatewayStatusResponse{Received: true}) //nolint:wrapcheck // the stream's own status
}

// recordRun writes a finished run to its IntegrationSource's status by
// server-side apply under the gateway's field manager: once per run.
func (s *Server) recordRun(ctx context.Context, key string, run *store.Run) error {
	ns, name, ok := strings.Cut(key, "/")
	if !ok || s.o.Status == nil {
		return nil
	}
	// A run without error succeeded, a full pass or a pass over the changes
	// since the last (never a full fetch); one with an error failed, or was
	// partial when it still delivered devices.
	result := v1alpha1.SyncResultSuccess
	switch {
	case run.Error != "" && run.Devices == 0:
		result = v1alpha1.SyncResultFailed
	case run.Error != "":
		result = v1alpha1.SyncResultPartial
	}
	if len(run.Error) > maxRunError {
		run.Error = strings.ToValidUTF8(run.Error[:maxRunError-3], "") + "..."
	}
	st := map[string]any{
		"lastSyncTime":      metav1.NewTime(run.Finished).Rfc3339Copy(),
		"lastSyncResult":    string(result),
		"devicesDiscovered": int64(run.Available),
		"lastRunID":         run.RunID,
		"lastError":         run.Error,
		"conditions":        []any{s.syncedCondition(ctx, types.NamespacedName{Namespace: ns, Name: name}, run, result)},
	}
	if err := applyStatus(ctx, s.o.Status, "IntegrationSource", types.NamespacedName{Namespace: ns, Name: name}, st); err != nil {
		return fmt.Errorf("recording run %s on IntegrationSource %s: %w", run.RunID, key, err)
	}
	return nil
}

// maxRunError bounds the run error written to status (the CRD's
// lastError maxLength: a longer one would fail the whole status write).
const maxRunError = 1024

// syncedCondition is the IntegrationSource's Synced condition after a run
// (the gateway owns it; the manager owns Ready): True when the run
// succeeded, its transition time kept while its status holds.
func (s *Server) syncedCondition(ctx context.Context, key types.NamespacedName, run *store.Run, result v1alpha1.SyncResult) map[string]any {
	c := metav1.Condition{Type: v1alpha1.ConditionSynced, Status: metav1.ConditionTrue, Reason: "Run" + string(result),
		LastTransitionTime: metav1.NewTime(run.Finished).Rfc3339Copy(),
		Message:            fmt.Sprintf("run %s: %d devices reported, %d available", run.RunID, run.Devices, run.Available)}
	if result != v1alpha1.SyncResultSuccess {
		c.Status = metav1.ConditionFalse
		c.Message = fmt.Sprintf("run %s: %d devices reported: %s", run.RunID, run.Devices, run.Error)
	}
	var src v1alpha1.IntegrationSource
	if s.o.Reader != nil && s.o.Reader.Get(ctx, key, &src) == nil {
		c.ObservedGeneration = src.Generation
		if old := meta.FindStatusCondition(src.Status.Conditions, v1alpha1.ConditionSynced); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	return map[string]any{"type": c.Type, "status": string(c.Status), "reason": c.Reason, "message": c.Message,
		"observedGeneration": c.ObservedGeneration, "lastTransitionTime": c.LastTransitionTime.UTC().Format(time.RFC3339)}
}
