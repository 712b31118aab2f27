package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/results"
)

// message is a results message of n Armis devices of a source.
func message(t *testing.T, sourceUID string, meta *results.Meta, from, n int, mutate func(*results.DeviceUpdate)) []byte {
	t.Helper()
	m := results.Message{Meta: meta}
	yes := true
	for i := from; i < from+n; i++ {
		d := results.DeviceUpdate{IP: fmt.Sprintf("10.9.0.%d", i), MAC: fmt.Sprintf("00:1b:44:00:00:%02x", i), IsAvailable: &yes,
			Metadata: map[string]string{"armis_device_id": fmt.Sprint(i), "integration_type": "armis", "integration_source_uid": sourceUID}}
		if mutate != nil {
			mutate(&d)
		}
		m.Devices = append(m.Devices, d)
	}
	raw, err := results.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func chunk(agent string, index, total int, final bool, msgs ...[]byte) *pb.GatewayStatusChunk {
	c := &pb.GatewayStatusChunk{AgentId: agent, ChunkIndex: int32(index), TotalChunks: int32(total), IsFinal: final}
	for _, m := range msgs {
		c.Services = append(c.Services, &pb.GatewayServiceStatus{ServiceName: results.ServiceName, ServiceType: results.ServiceType, Source: results.Source, Message: m})
	}
	return c
}

// checkStreamStatus runs inside TestConfigPlane, on its world: every stream
// rule refuses the call and commits nothing; a valid segment lands once.
func checkStreamStatus(t *testing.T, w *world) {
	ctx := context.Background()
	src := &v1alpha1.IntegrationSource{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns["acme"], Name: "acme-armis"}, src); err != nil {
		t.Fatal(err)
	}
	other := &v1alpha1.IntegrationSource{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns["globex"], Name: "globex-armis"}, other); err != nil {
		t.Fatal(err)
	}
	uid := string(src.UID)
	c := w.client(t, svid(t, w, "sync/acme/default/platform-sync-acme"))
	const agent = "platform-sync-acme"
	send := func(chunks ...*pb.GatewayStatusChunk) error {
		st, err := c.StreamStatus(ctx)
		if err != nil {
			return err
		}
		for _, ch := range chunks {
			if err := st.Send(ch); err != nil {
				break // the server refused early; CloseAndRecv has its status
			}
		}
		_, err = st.CloseAndRecv()
		return err
	}
	meta := func(segment int, complete bool) *results.Meta {
		return &results.Meta{IntegrationSourceUID: uid, SyncRunID: "7d1f2a8e-1111-4c1e-9b7e-000000000001", Segment: segment, RunComplete: complete, FullFetch: complete}
	}
	good := message(t, uid, meta(0, false), 1, 2, nil)
	otherTenant := chunk(agent, 0, 1, true, good)
	otherTenant.TenantSlug = "globex"
	many := make([][]byte, 17)
	for i := range many {
		many[i] = good
	}
	for _, tc := range []struct {
		name   string
		chunks []*pb.GatewayStatusChunk
		code   codes.Code
	}{
		{"agent_id changes within the call", []*pb.GatewayStatusChunk{chunk(agent, 0, 2, false, good), chunk("platform-sync-globex", 1, 2, true, good)}, codes.InvalidArgument},
		{"total_chunks is zero", []*pb.GatewayStatusChunk{chunk(agent, 0, 0, true, good)}, codes.InvalidArgument},
		{"total_chunks changes", []*pb.GatewayStatusChunk{chunk(agent, 0, 3, false, good), chunk(agent, 1, 2, true, good)}, codes.InvalidArgument},
		{"chunk_index out of order", []*pb.GatewayStatusChunk{chunk(agent, 1, 2, false, good)}, codes.InvalidArgument},
		{"the call ends before its final chunk", []*pb.GatewayStatusChunk{chunk(agent, 0, 2, false, good)}, codes.InvalidArgument},
		{"is_final before the last chunk", []*pb.GatewayStatusChunk{chunk(agent, 0, 2, true, good)}, codes.InvalidArgument},
		{"a chunk after the final one", []*pb.GatewayStatusChunk{chunk(agent, 0, 1, true, good), chunk(agent, 1, 1, true, good)}, codes.InvalidArgument},
		{"too many services in a chunk", []*pb.GatewayStatusChunk{chunk(agent, 0, 1, true, many...)}, codes.ResourceExhausted},
		{"too many chunks", []*pb.GatewayStatusChunk{chunk(agent, 0, 1000, false, good)}, codes.ResourceExhausted},
		{"malformed results", []*pb.GatewayStatusChunk{chunk(agent, 0, 1, true, []byte(`{"sync_meta":`))}, codes.InvalidArgument},
		{"agent_id of another component", []*pb.GatewayStatusChunk{chunk("platform-sync-globex", 0, 1, true, good)}, codes.PermissionDenied},
		{"a chunk names another tenant", []*pb.GatewayStatusChunk{otherTenant}, codes.PermissionDenied},
		{"a device names another tenant", []*pb.GatewayStatusChunk{chunk(agent, 0, 1, true, message(t, uid, meta(0, false), 1, 2, func(d *results.DeviceUpdate) { d.TenantID = w.tenantID["globex"] }))}, codes.PermissionDenied},
		{"another tenant's source", []*pb.GatewayStatusChunk{chunk(agent, 0, 1, true, message(t, string(other.UID), &results.Meta{IntegrationSourceUID: string(other.UID), SyncRunID: uuid.NewString()}, 1, 2, nil))}, codes.PermissionDenied},
		{"a device of another partition", []*pb.GatewayStatusChunk{chunk(agent, 0, 1, true, message(t, uid, meta(0, false), 1, 2, func(d *results.DeviceUpdate) { d.Partition = "dmz" }))}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := send(tc.chunks...)
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
			assertNoLeak(t, w, status.Convert(err).Message())
		})
	}
	devices := func() int {
		t.Helper()
		var n int
		if err := w.store.Pool().QueryRow(ctx, "SELECT count(*) FROM tenant_acme.ocsf_devices").Scan(&n); err != nil {
			if strings.Contains(err.Error(), "does not exist") {
				return 0
			}
			t.Fatal(err)
		}
		return n
	}
	// A call cancelled part-way commits nothing either.
	cctx, cancel := context.WithCancel(ctx)
	st, err := c.StreamStatus(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(chunk(agent, 0, 2, false, good)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := st.CloseAndRecv(); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v", err)
	}
	if n := devices(); n != 0 {
		t.Fatalf("refused or cancelled calls committed %d devices", n)
	}

	// A valid segment in two chunks, then the same segment again, then the run's last segment.
	if err := send(chunk(agent, 0, 2, false, good), chunk(agent, 1, 2, true, message(t, uid, meta(0, false), 3, 2, nil))); err != nil {
		t.Fatal(err)
	}
	if err := send(chunk(agent, 0, 2, false, good), chunk(agent, 1, 2, true, message(t, uid, meta(0, false), 3, 2, nil))); err != nil {
		t.Fatalf("a replayed segment is acknowledged: %v", err)
	}
	if n := devices(); n != 4 {
		t.Fatalf("%d devices after a segment and its replay, want 4", n)
	}
	if err := send(chunk(agent, 0, 1, true, message(t, uid, meta(1, true), 5, 1, nil))); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), src); err != nil {
		t.Fatal(err)
	}
	if src.Status.LastRunID != meta(0, false).SyncRunID || src.Status.DevicesDiscovered != 5 || src.Status.LastSyncResult != v1alpha1.SyncResultSuccess || src.Status.LastSyncTime == nil {
		t.Fatalf("source status after the run: %+v", src.Status)
	}
	// The manager owns Ready (by server-side apply under its own field
	// manager); the gateway's Synced must sit beside it.
	ready := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
		"type": v1alpha1.ConditionReady, "status": "True", "reason": "Resolved", "message": "set by the test as the manager",
		"lastTransitionTime": "2026-01-02T03:04:05Z"}}}}}
	ready.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("IntegrationSource"))
	ready.SetName(src.Name)
	ready.SetNamespace(src.Namespace)
	if err := env.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(ready), client.FieldOwner("sync-operator-manager"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	synced := apimeta.FindStatusCondition(src.Status.Conditions, v1alpha1.ConditionSynced)
	if synced == nil || synced.Status != metav1.ConditionTrue || synced.Reason != "RunSuccess" || synced.ObservedGeneration != src.Generation {
		t.Fatalf("Synced after a full run: %+v", synced)
	}
	since := synced.LastTransitionTime
	// A run over the changes since the last (no full fetch, no error)
	// succeeded; a run with an error is partial and Synced turns False.
	long := strings.Repeat("page failed; ", 200) // 2,600 bytes: lastError holds 1,024
	for _, tc := range []struct {
		run, runErr, wantErr string
		want                 v1alpha1.SyncResult
		synced               metav1.ConditionStatus
	}{
		{"7d1f2a8e-1111-4c1e-9b7e-000000000002", "", "", v1alpha1.SyncResultSuccess, metav1.ConditionTrue},
		{"7d1f2a8e-1111-4c1e-9b7e-000000000003", "query \"all\", page 3: 503 Service Unavailable", "query \"all\", page 3: 503 Service Unavailable",
			v1alpha1.SyncResultPartial, metav1.ConditionFalse},
		{"7d1f2a8e-1111-4c1e-9b7e-000000000004", long, long[:1021] + "...", v1alpha1.SyncResultPartial, metav1.ConditionFalse},
	} {
		m := &results.Meta{IntegrationSourceUID: uid, SyncRunID: tc.run, RunComplete: true, Error: tc.runErr}
		if err := send(chunk(agent, 0, 1, true, message(t, uid, m, 1, 1, nil))); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(src), src); err != nil {
			t.Fatal(err)
		}
		c := apimeta.FindStatusCondition(src.Status.Conditions, v1alpha1.ConditionSynced)
		if src.Status.LastRunID != tc.run || src.Status.LastSyncResult != tc.want || src.Status.LastError != tc.wantErr || src.Status.DevicesDiscovered != 5 ||
			c == nil || c.Status != tc.synced || !strings.Contains(c.Message, tc.wantErr) {
			t.Fatalf("run %s: status %+v", tc.run, src.Status)
		}
		if tc.synced == metav1.ConditionTrue && !c.LastTransitionTime.Equal(&since) {
			t.Errorf("Synced moved its transition time without a transition: %v, was %v", c.LastTransitionTime, since)
		}
		if ready := apimeta.FindStatusCondition(src.Status.Conditions, v1alpha1.ConditionReady); ready == nil {
			t.Errorf("the gateway's Synced condition replaced the manager's Ready: %+v", src.Status.Conditions)
		}
	}
	// The upstream array form is accepted too.
	arr := strings.TrimPrefix(string(message(t, uid, nil, 10, 2, nil)), `{"devices":`)
	if err := send(chunk(agent, 0, 1, true, []byte(strings.TrimSuffix(arr, "}")))); err != nil {
		t.Fatal(err)
	}
	if n := devices(); n != 7 {
		t.Fatalf("%d devices after an array-form call, want 7", n)
	}
	var globex int
	_ = w.store.Pool().QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tenant_globex'").Scan(&globex)
	if globex != 0 {
		t.Fatal("acme's devices created globex's schema")
	}

	// Sweep targets follow the devices: enable sweep on the source, then
	// watch an agent of acme's default partition get exactly its available devices.
	if err := env.Client.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"sweep":{"enabled":true,"ports":[443,22],"networks":["10.9.0.0/24"]}}}`))); err != nil {
		t.Fatal(err)
	}
	agentClient := w.client(t, svid(t, w, "agent/acme/default/agent-1"))
	targets := func(want int) *pb.SweepConfig {
		t.Helper()
		var last *pb.SweepConfig
		for range 100 {
			cfg, err := agentClient.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "agent-1"})
			if err != nil {
				t.Fatal(err)
			}
			if last = cfg.GetSweep(); len(last.GetDeviceTargets()) == want {
				return last
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("sweep has %d targets, want %d: %v", len(last.GetDeviceTargets()), want, last)
		return nil
	}
	sw := targets(7)
	if got := sw.DeviceTargets[0]; got.Ip != "10.9.0.1" || fmt.Sprint(got.Ports) != "[22 443]" || fmt.Sprint(sw.Networks) != "[10.9.0.0/24]" {
		t.Fatalf("sweep %v", sw)
	}
	// A complete run with only three devices retracts the rest, and the sweep follows.
	run2 := &results.Meta{IntegrationSourceUID: uid, SyncRunID: uuid.NewString(), RunComplete: true, FullFetch: true}
	if err := send(chunk(agent, 0, 1, true, message(t, uid, run2, 1, 3, nil))); err != nil {
		t.Fatal(err)
	}
	targets(3)
	// Another partition's agent sees none of them.
	other1 := w.client(t, svid(t, w, "agent/acme/hq/agent-2"))
	cfg, err := other1.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "agent-2"})
	if err != nil || len(cfg.GetSweep().GetDeviceTargets()) != 0 {
		t.Fatalf("hq agent sweep %v %v", cfg.GetSweep(), err)
	}
	assertNoLeak(t, w, w.logs.String())
}
