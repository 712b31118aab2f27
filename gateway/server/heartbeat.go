package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/statusapply"
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
// most once per interval per SyncService across replicas: a replica skips a
// steady write when its memory, or the SyncService's lastHeartbeatAt in the
// informer cache (another replica's write), is younger than the interval.
type heartbeats struct {
	c      client.Client
	r      client.Reader
	now    func() time.Time
	every  time.Duration
	writes prometheus.Counter

	mu sync.Mutex
	// last holds, by SyncService UID, what this replica wrote or saw lately.
	// Entries older than keepBeats intervals (deleted SyncServices among
	// them) are swept: by then the cache has whatever they said.
	last    map[types.UID]beat
	sweepAt time.Time
}

// keepBeats is how many write intervals a remembered beat is kept.
const keepBeats = 10

// remembered returns the beat of a SyncService this replica knows, sweeping
// the old entries once per interval.
func (h *heartbeats) remembered(uid types.UID, now time.Time) (beat, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !now.Before(h.sweepAt) {
		for k, b := range h.last {
			if now.Sub(b.written) >= keepBeats*h.every {
				delete(h.last, k)
			}
		}
		h.sweepAt = now.Add(h.every)
	}
	b, ok := h.last[uid]
	return b, ok
}

func (h *heartbeats) remember(uid types.UID, b beat) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last[uid] = b
}

// cached is the SyncService's runtime status as the informer cache has it:
// the last write of any replica. ok is false when the cache no longer has
// this SyncService.
func (h *heartbeats) cached(ctx context.Context, ss *v1alpha1.SyncService) (beat, bool, error) {
	cur := &v1alpha1.SyncService{}
	if err := h.r.Get(ctx, client.ObjectKeyFromObject(ss), cur); err != nil {
		if apierrors.IsNotFound(err) {
			return beat{}, false, nil
		}
		return beat{}, false, fmt.Errorf("reading SyncService %s from the cache: %w", client.ObjectKeyFromObject(ss), err)
	}
	if cur.UID != ss.UID {
		return beat{}, false, nil
	}
	b := beat{caps: cur.Status.Capabilities, version: cur.Status.Version}
	if cur.Status.LastHeartbeatAt != nil {
		b.written = cur.Status.LastHeartbeatAt.Time
	}
	return b, true, nil
}

// record notes a heartbeat. With info false (PushStatus carries no
// capabilities or version) the last known ones are kept.
func (h *heartbeats) record(ctx context.Context, ss *v1alpha1.SyncService, caps []string, version string, info bool) error {
	key := client.ObjectKeyFromObject(ss)
	now := h.now()
	prev, seen := h.remembered(ss.UID, now)
	if !seen || now.Sub(prev.written) >= h.every {
		// Due by this replica's memory: another replica may have written since.
		cur, ok, err := h.cached(ctx, ss)
		if err != nil {
			return err
		}
		if !ok {
			return nil // deleted: nothing to record
		}
		if !seen || cur.written.After(prev.written) {
			prev = cur
		}
	}
	if !info {
		caps, version = prev.caps, prev.version
	}
	caps = slices.Clone(caps)
	slices.Sort(caps)
	caps = slices.Compact(caps)
	changed := !slices.Equal(caps, prev.caps) || version != prev.version
	if !changed && now.Sub(prev.written) < h.every {
		h.remember(ss.UID, prev)
		return nil
	}
	// Noted before the write, so that concurrent heartbeats of the same
	// SyncService skip it; undone when the write fails.
	h.remember(ss.UID, beat{written: now, caps: caps, version: version})
	at := metav1.NewTime(now).Rfc3339Copy()
	if err := statusapply.Apply(ctx, h.c, FieldOwner, &v1alpha1.SyncService{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Status:     v1alpha1.SyncServiceStatus{LastHeartbeatAt: &at, Capabilities: caps, Version: version},
	}); err != nil {
		h.remember(ss.UID, prev)
		return fmt.Errorf("recording heartbeat: %w", err)
	}
	h.writes.Inc()
	return nil
}
