package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"

	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/workers/uplink"
)

// checkCommands runs inside TestConfigPlane: the gateway sends commands to
// a real worker uplink on its ControlStream over mTLS and observes their
// results; unknown types and failing handlers are answered, never a broken
// stream; another caller cannot answer a worker's command.
func checkCommands(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	classifier, _ := identity.NewClassifier("", "")
	const spiffe = "spiffe://serviceradar.local/sync/acme/default/platform-sync-acme"
	worker, err := classifier.ClassifySPIFFEID(spiffeid.RequireFromString(spiffe))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.srv.SendCommand(ctx, worker, server.Command{Type: "sync.run_now"}); !errors.Is(err, server.ErrNotConnected) {
		t.Fatalf("a command for a worker without a stream: %v", err)
	}

	blocked, release := make(chan string, 1), make(chan struct{})
	logs := &syncBuffer{}
	src := pkitest.Source(t, filepath.Join(t.TempDir(), "worker"), svid(t, w, strings.TrimPrefix(spiffe, "spiffe://serviceradar.local/")), w.root.Cert)
	up, err := uplink.New(uplink.Config{Target: w.addr, AgentID: "platform-sync-acme", Partition: "default",
		Creds: credentials.NewTLS(mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{})),
		Log:   funcr.New(func(prefix, args string) { logs.write(prefix + " " + args) }, funcr.Options{}),
		Commands: map[string]uplink.CommandHandler{
			"sync.run_now": func(_ context.Context, req *pb.CommandRequest) uplink.CommandOutcome {
				return uplink.CommandOutcome{Success: true, Message: "sync started", Payload: req.GetPayloadJson()}
			},
			"test.panic": func(context.Context, *pb.CommandRequest) uplink.CommandOutcome { panic("handler bug") },
			"test.block": func(_ context.Context, req *pb.CommandRequest) uplink.CommandOutcome {
				blocked <- req.GetCommandId()
				<-release
				return uplink.CommandOutcome{Success: true, Message: "done"}
			},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = up.Close() }()
	rctx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); _ = up.Run(rctx, func(uplink.Update) {}) }()
	defer func() { stop(); <-ran }()

	var first server.CommandOutcome
	test.Eventually(t, "the worker's control stream is open", 30*time.Second, func() bool {
		first, err = w.srv.SendCommand(ctx, worker, server.Command{Type: "sync.run_now", Payload: []byte(`{"source":"acme-armis"}`), TTL: time.Hour})
		return !errors.Is(err, server.ErrNotConnected)
	})
	if err != nil || first.Ack == nil || first.Ack.GetCommandId() != first.ID || !first.Result.GetSuccess() ||
		first.Result.GetMessage() != "sync started" || string(first.Result.GetPayloadJson()) != `{"source":"acme-armis"}` {
		t.Fatalf("sync.run_now: %+v %v", first, err)
	}
	for _, tc := range []struct {
		typ, message string
	}{
		{"mapper.run_job", `unknown command type "mapper.run_job": this worker performs [sync.run_now test.block test.panic]`},
		{"", `unknown command type ""`},
		{"test.panic", "the command failed: handler bug"},
	} {
		out, err := w.srv.SendCommand(ctx, worker, server.Command{Type: tc.typ})
		if err != nil || out.Ack == nil || out.Result.GetSuccess() || !strings.HasPrefix(out.Result.GetMessage(), tc.message) || out.Result.GetCommandId() != out.ID {
			t.Fatalf("%q: %+v %v", tc.typ, out, err)
		}
	}

	// Another caller (acme's edge worker, with its own ControlStream) tries
	// to answer the worker's command: its answer is dropped.
	rogue := w.client(t, edge(t, w, "acme", "edge", "hq", "acme"))
	rs, err := rogue.ControlStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: "edge"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Recv(); err != nil { // its first config: the stream is authorized
		t.Fatal(err)
	}
	type answer struct {
		out server.CommandOutcome
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		out, err := w.srv.SendCommand(ctx, worker, server.Command{Type: "test.block"})
		answered <- answer{out, err}
	}()
	id := <-blocked
	before := strings.Count(w.logs.String(), "answers no pending command")
	if err := rs.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CommandResult{CommandResult: &pb.CommandResult{
		CommandId: id, CommandType: "test.block", Success: false, Message: "forged"}}}); err != nil {
		t.Fatal(err)
	}
	test.Eventually(t, "the forged answer is dropped", 30*time.Second, func() bool {
		return strings.Count(w.logs.String(), "answers no pending command") > before
	})
	close(release)
	got := <-answered
	if got.err != nil || !got.out.Result.GetSuccess() || got.out.Result.GetMessage() != "done" {
		t.Fatalf("the blocked command: %+v %v", got.out, got.err)
	}
	if strings.Contains(logs.String(), "control stream ended") {
		t.Fatalf("a command broke the worker's control stream:\n%s", logs.String())
	}
}

// checkAgentControlStream runs inside TestConfigPlane: an agent's
// ControlStream is served (ServiceRadar's agents retry a refused one every
// 5 s forever) with the agent's own configuration, never a sync bundle.
func checkAgentControlStream(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := w.client(t, svid(t, w, "agent/acme/default/platform-sync-acme"))
	st, err := c.ControlStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: "platform-sync-acme"}}}); err != nil {
		t.Fatal(err)
	}
	msg, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(msg.GetConfig().GetConfigJson(), &got); err != nil {
		t.Fatal(err)
	}
	if got["scope"] != "agent" || got["tenant_slug"] != "acme" || got["sources"] != nil || got["sweep"] == nil {
		t.Fatalf("agent control stream served %s", msg.GetConfig().GetConfigJson())
	}
	direct, err := c.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "platform-sync-acme"})
	if err != nil || direct.ConfigVersion != msg.GetConfig().GetConfigVersion() {
		t.Fatalf("GetConfig %v %v, stream version %s", direct.GetConfigVersion(), err, msg.GetConfig().GetConfigVersion())
	}
	if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_ConfigAck{ConfigAck: &pb.ConfigAck{ConfigVersion: direct.ConfigVersion}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	assertNoLeak(t, w, string(msg.GetConfig().GetConfigJson()))
}
