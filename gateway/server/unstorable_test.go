package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/wire/results"
)

// checkUnstorable runs inside TestConfigPlane, after checkStreamStatus: a
// hostile or broken integration server puts a NUL byte into one device.
// That device alone is refused (PostgreSQL's text and jsonb cannot hold
// it), the rest of the segment lands, the run completes with a partial
// result that says why, and the source's next run is not blocked. A segment
// that can never be stored is refused InvalidArgument, which the worker does
// not retry, instead of Unavailable, which it retries forever.
func checkUnstorable(t *testing.T, w *world) {
	ctx := context.Background()
	src := &v1alpha1.IntegrationSource{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns["acme"], Name: "acme-armis"}, src); err != nil {
		t.Fatal(err)
	}
	uid := string(src.UID)
	c := w.client(t, svid(t, w, "sync/acme/default/platform-sync-acme"))
	const agent = "platform-sync-acme"
	send := func(msg []byte) error {
		st, err := c.StreamStatus(ctx)
		if err != nil {
			return err
		}
		_ = st.Send(chunk(agent, 0, 1, true, msg))
		_, err = st.CloseAndRecv()
		return err
	}
	devices := func() int {
		t.Helper()
		var n int
		if err := w.store.Pool().QueryRow(ctx, "SELECT count(*) FROM tenant_acme.ocsf_devices WHERE hostname LIKE 'nul-%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	run := uuid.NewString()
	bad := message(t, uid, &results.Meta{IntegrationSourceUID: uid, SyncRunID: run, RunComplete: true}, 200, 3, func(d *results.DeviceUpdate) {
		d.Hostname = "nul-" + d.Metadata["armis_device_id"]
		if d.Metadata["armis_device_id"] == "201" {
			d.Metadata["site"] = "dc\x001"
		}
	})
	if err := send(bad); err != nil {
		t.Fatalf("a segment with one unstorable device was refused whole: %v", err)
	}
	if n := devices(); n != 2 {
		t.Fatalf("%d of the segment's good devices landed, want 2", n)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), src); err != nil {
		t.Fatal(err)
	}
	synced := apimeta.FindStatusCondition(src.Status.Conditions, v1alpha1.ConditionSynced)
	if src.Status.LastRunID != run || src.Status.LastSyncResult != v1alpha1.SyncResultPartial ||
		!strings.Contains(src.Status.LastError, `device updates refused: 1 (first: device 1 of segment 0: metadata["site"] contains a NUL byte)`) ||
		synced == nil || synced.Status != metav1.ConditionFalse {
		t.Fatalf("status after a run with a refused device: %+v", src.Status)
	}
	if strings.ContainsRune(src.Status.LastError, 0) {
		t.Fatal("the NUL byte reached the status")
	}

	// The next run of the source lands whole.
	next := uuid.NewString()
	if err := send(message(t, uid, &results.Meta{IntegrationSourceUID: uid, SyncRunID: next, RunComplete: true}, 203, 1,
		func(d *results.DeviceUpdate) { d.Hostname = "nul-203" })); err != nil {
		t.Fatal(err)
	}
	if n := devices(); n != 3 {
		t.Fatalf("%d devices after the next run, want 3", n)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), src); err != nil {
		t.Fatal(err)
	}
	if src.Status.LastRunID != next || src.Status.LastSyncResult != v1alpha1.SyncResultSuccess {
		t.Fatalf("the next run after a refused device: %+v", src.Status)
	}

	// A run id PostgreSQL cannot store (the column is a uuid) is refused
	// for good, naming the field.
	err := send(message(t, uid, &results.Meta{IntegrationSourceUID: uid, SyncRunID: "run-1"}, 204, 1, nil))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "sync_run_id") {
		t.Fatalf("a segment whose run id is not a UUID: %v, want InvalidArgument naming sync_run_id", err)
	}
}
