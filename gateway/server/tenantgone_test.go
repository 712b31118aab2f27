package server_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/serviceradar/sync-operator/wire/results"
)

// checkTenantGone runs last inside TestConfigPlane: a segment of a tenant
// whose Tenant was deleted while its worker still streams is refused for
// good by the store (store.ErrTenantGone), so the gateway answers
// FailedPrecondition, which the worker does not retry, and not Unavailable,
// which it retries forever.
func checkTenantGone(t *testing.T, w *world) {
	ctx := context.Background()
	uid := sourceUID(t, w, "acme", "acme-armis")
	c := w.client(t, svid(t, w, "sync/acme/default/platform-sync-acme"))
	// What every replica is told when the Tenant goes (package schemas).
	w.store.ForgetTenant("acme")
	meta := &results.Meta{IntegrationSourceUID: uid, SyncRunID: uuid.NewString()}
	err := stream(ctx, c, chunks(chunk("platform-sync-acme", 0, 1, true, message(t, uid, meta, 1, 2, nil))))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a segment of a deleted tenant: %v, want FailedPrecondition", err)
	}
}
