package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// FieldOwner is the server-side apply field manager of the gateway. It owns
// only the runtime status fields (heartbeat, reported capabilities and
// version); the manager owns the rest.
const FieldOwner = "sync-operator-gateway"

// DefaultHeartbeatWrite is how often steady heartbeats of one SyncService are written.
const DefaultHeartbeatWrite = 30 * time.Second

type beat struct {
	written time.Time
	caps    []string
	version string
}

// heartbeats writes worker liveness to SyncService status with bounded
// writes: the first heartbeat and any change at once, steady heartbeats at
// most once per interval per SyncService (per gateway replica).
type heartbeats struct {
	c     client.Client
	now   func() time.Time
	every time.Duration

	mu   sync.Mutex
	last map[types.NamespacedName]beat
}

// record notes a heartbeat. With info false (PushStatus carries no
// capabilities or version) the last known ones are kept.
func (h *heartbeats) record(ctx context.Context, ss *v1alpha1.SyncService, caps []string, version string, info bool) error {
	key := types.NamespacedName{Namespace: ss.Namespace, Name: ss.Name}
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, seen := h.last[key]
	if !seen {
		prev = beat{caps: ss.Status.Capabilities, version: ss.Status.Version}
		if ss.Status.LastHeartbeatAt != nil {
			prev.written = ss.Status.LastHeartbeatAt.Time
		}
	}
	if !info {
		caps, version = prev.caps, prev.version
	}
	caps = slices.Clone(caps)
	slices.Sort(caps)
	caps = slices.Compact(caps)
	now := h.now()
	changed := !slices.Equal(caps, prev.caps) || version != prev.version
	if !changed && seen && now.Sub(prev.written) < h.every {
		return nil
	}
	st := map[string]any{"lastHeartbeatAt": metav1.NewTime(now).Rfc3339Copy()}
	if len(caps) > 0 {
		st["capabilities"] = caps
	}
	if version != "" {
		st["version"] = version
	}
	if err := applyStatus(ctx, h.c, "SyncService", key, st); err != nil {
		return fmt.Errorf("recording heartbeat of SyncService %s: %w", key, err)
	}
	h.last[key] = beat{written: now, caps: caps, version: version}
	return nil
}

// applyStatus writes runtime status fields of one of the project's kinds by
// server-side apply under the gateway's field manager, leaving the
// manager's fields alone.
func applyStatus(ctx context.Context, c client.Client, kind string, key types.NamespacedName, status map[string]any) error {
	u := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind(kind)
	u.SetName(key.Name)
	u.SetNamespace(key.Namespace)
	return c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership) //nolint:wrapcheck // callers add which object
}
