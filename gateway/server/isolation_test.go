package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity/ca"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
)

// checkIsolation runs inside TestConfigPlane, on its world: acme's callers
// dressed as globex in every field a message has are refused
// (PermissionDenied, DESIGN.md section 5) on ControlStream, PushStatus and
// StreamStatus, and nothing of globex reaches them, their refusals or the logs.
func checkIsolation(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// globex's own edge worker is enrolled: its config version is something
	// an acme caller could replay.
	globexCfg, err := w.client(t, edge(t, w, "globex", "globex-edge", "hq", "globex")).GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "globex-edge"})
	if err != nil {
		t.Fatal(err)
	}
	globexHints := map[string]string{"tenant_slug": "globex", "tenant_id": w.tenantID["globex"], "tenant": "globex"}
	platformWorker := svid(t, w, "sync/acme/default/platform-sync-acme")
	acmeEdge := edge(t, w, "acme", "edge", "hq", "acme")
	refusal := func(t *testing.T, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Fatalf("got %v, want %s", err, want)
		}
		assertNoLeak(t, w, status.Convert(err).Message())
	}

	t.Run("ControlStream", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			cert  *ca.Issued
			hello *pb.ControlStreamHello
			code  codes.Code // OK: served with the caller's own configuration
		}{
			{"agent_id of another component", platformWorker, &pb.ControlStreamHello{AgentId: "platform-sync-globex"}, codes.PermissionDenied},
			{"every hello field of the other tenant", acmeEdge, &pb.ControlStreamHello{AgentId: "globex-edge", Partition: "hq",
				ConfigVersion: globexCfg.ConfigVersion, Labels: globexHints}, codes.PermissionDenied},
			{"an agent identity asking as the worker", svid(t, w, "agent/acme/default/agent-1"), &pb.ControlStreamHello{AgentId: "platform-sync-acme"}, codes.PermissionDenied},
			{"an edge component not enrolled", edge(t, w, "acme", "rogue", "hq", "acme"), &pb.ControlStreamHello{AgentId: "rogue"}, codes.PermissionDenied},
			{"another tenant's labels, partition and version are ignored", platformWorker, &pb.ControlStreamHello{AgentId: "platform-sync-acme",
				Partition: "hq", ConfigVersion: globexCfg.ConfigVersion, Labels: globexHints}, codes.OK},
			{"the same on the edge", acmeEdge, &pb.ControlStreamHello{AgentId: "edge", Partition: "default",
				ConfigVersion: globexCfg.ConfigVersion, Labels: globexHints}, codes.OK},
		} {
			t.Run(tc.name, func(t *testing.T) {
				sctx, stop := context.WithCancel(ctx)
				defer stop()
				stream, err := w.client(t, tc.cert).ControlStream(sctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := stream.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: tc.hello}}); err != nil {
					t.Fatal(err)
				}
				msg, err := stream.Recv()
				if tc.code != codes.OK {
					if msg != nil {
						t.Fatalf("a refused stream sent %s", msg.GetConfig().GetConfigJson())
					}
					refusal(t, err, tc.code)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var b bundle.Sync
				if err := json.Unmarshal(msg.GetConfig().GetConfigJson(), &b); err != nil {
					t.Fatal(err)
				}
				if b.TenantSlug != "acme" || b.TenantID != w.tenantID["acme"] || b.AgentID != tc.hello.AgentId || len(b.Sources) == 0 {
					t.Fatalf("served %s", msg.GetConfig().GetConfigJson())
				}
				assertNoLeak(t, w, string(msg.GetConfig().GetConfigJson()))
			})
		}
	})

	t.Run("PushStatus", func(t *testing.T) {
		svc := func(mutate func(*pb.GatewayServiceStatus)) []*pb.GatewayServiceStatus {
			s := &pb.GatewayServiceStatus{ServiceName: "sync", ServiceType: "sync", Source: "status", Available: true}
			mutate(s)
			return []*pb.GatewayServiceStatus{s}
		}
		for _, tc := range []struct {
			name string
			cert *ca.Issued
			req  *pb.GatewayStatusRequest
			code codes.Code
		}{
			{"edge: the other tenant's id", acmeEdge, &pb.GatewayStatusRequest{AgentId: "edge", TenantId: w.tenantID["globex"]}, codes.PermissionDenied},
			{"edge: the other tenant's slug", acmeEdge, &pb.GatewayStatusRequest{AgentId: "edge", TenantSlug: "globex"}, codes.PermissionDenied},
			{"edge: services[].tenant_id", acmeEdge, &pb.GatewayStatusRequest{AgentId: "edge", Services: svc(func(s *pb.GatewayServiceStatus) { s.TenantId = w.tenantID["globex"] })}, codes.PermissionDenied},
			{"edge: services[].tenant_slug", acmeEdge, &pb.GatewayStatusRequest{AgentId: "edge", Services: svc(func(s *pb.GatewayServiceStatus) { s.TenantSlug = "globex" })}, codes.PermissionDenied},
			{"edge: services[].agent_id of the other tenant's edge", acmeEdge, &pb.GatewayStatusRequest{AgentId: "edge", Services: svc(func(s *pb.GatewayServiceStatus) { s.AgentId = "globex-edge" })}, codes.PermissionDenied},
			{"edge: agent_id of the other tenant's edge", acmeEdge, &pb.GatewayStatusRequest{AgentId: "globex-edge", TenantSlug: "globex", TenantId: w.tenantID["globex"]}, codes.PermissionDenied},
			{"SVID: services[].agent_id of another component", platformWorker, &pb.GatewayStatusRequest{AgentId: "platform-sync-acme", Services: svc(func(s *pb.GatewayServiceStatus) { s.AgentId = "platform-sync-globex" })}, codes.PermissionDenied},
			{"an agent identity: its own fields", svid(t, w, "agent/acme/default/agent-1"), &pb.GatewayStatusRequest{AgentId: "agent-1", TenantSlug: "acme"}, codes.OK},
			{"an agent identity: the other tenant's slug", svid(t, w, "agent/acme/default/agent-1"), &pb.GatewayStatusRequest{AgentId: "agent-1", TenantSlug: "globex"}, codes.PermissionDenied},
			{"an agent identity: the other tenant's id", svid(t, w, "agent/acme/default/agent-1"), &pb.GatewayStatusRequest{AgentId: "agent-1", TenantId: w.tenantID["globex"]}, codes.PermissionDenied},
			{"an agent identity: another agent's id", svid(t, w, "agent/acme/default/agent-1"), &pb.GatewayStatusRequest{AgentId: "agent-2"}, codes.PermissionDenied},
			{"an agent identity: another partition", svid(t, w, "agent/acme/default/agent-1"), &pb.GatewayStatusRequest{AgentId: "agent-1", Partition: "hq"}, codes.PermissionDenied},
			{"edge: its own fields", acmeEdge, &pb.GatewayStatusRequest{AgentId: "edge", TenantSlug: "acme", TenantId: w.tenantID["acme"],
				Services: svc(func(s *pb.GatewayServiceStatus) {
					s.AgentId, s.TenantSlug, s.TenantId = "edge", "acme", w.tenantID["acme"]
				})}, codes.OK},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, err := w.client(t, tc.cert).PushStatus(ctx, tc.req)
				if tc.code == codes.OK {
					if err != nil || !resp.GetReceived() {
						t.Fatalf("%+v %v", resp, err)
					}
					return
				}
				refusal(t, err, tc.code)
			})
		}
	})

	t.Run("StreamStatus", func(t *testing.T) {
		src := &v1alpha1.IntegrationSource{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns["acme"], Name: "acme-armis"}, src); err != nil {
			t.Fatal(err)
		}
		uid := string(src.UID)
		msg := message(t, uid, &results.Meta{IntegrationSourceUID: uid, SyncRunID: "7d1f2a8e-2222-4c1e-9b7e-000000000001"}, 1, 1, nil)
		one := func(agent string, mutate func(*pb.GatewayStatusChunk)) *pb.GatewayStatusChunk {
			c := chunk(agent, 0, 1, true, msg)
			mutate(c)
			return c
		}
		const agent = "platform-sync-acme"
		// rule is the refusal's reason: the rule under test, not a later one
		// (the edge's cases send the platform worker's source, which it
		// would also be refused for, after these checks).
		const tenantRule, agentRule = "tenant fields in the request contradict the certificate", "agent_id does not match"
		for _, tc := range []struct {
			name  string
			cert  *ca.Issued
			chunk *pb.GatewayStatusChunk
			rule  string
		}{
			{"an agent: chunk tenant_slug", svid(t, w, "agent/acme/default/agent-1"), one("agent-1", func(c *pb.GatewayStatusChunk) { c.TenantSlug = "globex" }), tenantRule},
			{"an agent: service tenant_id", svid(t, w, "agent/acme/default/agent-1"), one("agent-1", func(c *pb.GatewayStatusChunk) { c.Services[0].TenantId = w.tenantID["globex"] }), tenantRule},
			{"an agent: another agent's id", svid(t, w, "agent/acme/default/agent-1"), one("agent-2", func(*pb.GatewayStatusChunk) {}), agentRule},
			{"chunk tenant_id", platformWorker, one(agent, func(c *pb.GatewayStatusChunk) { c.TenantId = w.tenantID["globex"] }), tenantRule},
			{"service tenant_id", platformWorker, one(agent, func(c *pb.GatewayStatusChunk) { c.Services[0].TenantId = w.tenantID["globex"] }), tenantRule},
			{"service tenant_slug", platformWorker, one(agent, func(c *pb.GatewayStatusChunk) { c.Services[0].TenantSlug = "globex" }), tenantRule},
			{"service agent_id", platformWorker, one(agent, func(c *pb.GatewayStatusChunk) { c.Services[0].AgentId = "platform-sync-globex" }), agentRule},
			{"edge: chunk tenant_slug", acmeEdge, one("edge", func(c *pb.GatewayStatusChunk) { c.TenantSlug = "globex" }), tenantRule},
			{"edge: service agent_id", acmeEdge, one("edge", func(c *pb.GatewayStatusChunk) { c.Services[0].AgentId = "globex-edge" }), agentRule},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, err := w.client(t, tc.cert).StreamStatus(ctx)
				if err != nil {
					t.Fatal(err)
				}
				_ = st.Send(tc.chunk) // a refusal may come first; CloseAndRecv has it
				_, err = st.CloseAndRecv()
				refusal(t, err, codes.PermissionDenied)
				if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.rule) {
					t.Fatalf("refused for %q, want the rule %q", msg, tc.rule)
				}
			})
		}
	})
}
