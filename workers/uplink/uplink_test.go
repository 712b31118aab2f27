package uplink_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/workers/uplink"
)

// replica is one running gateway process (in-process app.Run).
type replica struct {
	addr string
	stop func()
}

// startReplica runs a gateway with the shipped gateway RBAC (cfg).
func startReplica(t *testing.T, cfg *rest.Config, files pkitest.Files, name string) replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{Kube: cfg, Listen: "127.0.0.1:0", CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA,
			GatewayID: name, Log: logr.Discard(), Ready: func(addr string) { ready <- addr }})
	}()
	select {
	case addr := <-ready:
		stopped := false
		stop := func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway %s stopped with %v", name, err)
			}
		}
		t.Cleanup(stop)
		return replica{addr: addr, stop: stop}
	case err := <-done:
		cancel()
		t.Fatalf("gateway %s: %v", name, err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("gateway %s did not start", name)
	}
	return replica{}
}

func TestUplinkFollowsConfigAcrossGatewayReplicas(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()

	// The platform serves acme with one Faker source.
	ns := map[string]string{}
	for _, slug := range []string{"platform", "acme"} {
		if ns[slug], _, err = env.OnboardTenant(ctx, slug, slug == "platform"); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []client.Object{
		&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "platform-sync", Namespace: ns["platform"]}, Spec: v1alpha1.SyncServiceSpec{Platform: true}},
		&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "lab", Namespace: ns["acme"]}, Spec: v1alpha1.IntegrationSourceSpec{
			Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: 100},
			SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: ns["platform"], Name: "platform-sync"}}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	root, err := ca.NewRoot("root", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gw, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gw"), time.Hour)
	gwFiles := pkitest.Write(t, filepath.Join(dir, "gw"), gw, root.Cert)
	gwUser, err := env.UserWithRoles(ctx, "gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := startReplica(t, gwUser.Config(), gwFiles, "a")
	b := startReplica(t, gwUser.Config(), gwFiles, "b")

	// A Kubernetes Service in front of the replicas, as the worker's resolver sees it.
	res := manual.NewBuilderWithScheme("gateways")
	res.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: a.addr}, {Addr: b.addr}}})
	worker, _ := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/sync/acme/default/platform-sync-acme"), time.Hour)
	classifier, _ := identity.NewClassifier("", "")
	src := pkitest.Source(t, filepath.Join(dir, "worker"), worker, root.Cert)
	up, err := uplink.New(uplink.Config{
		Target: "gateways:///gateway", Creds: credentials.NewTLS(mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{})),
		DialOptions: []grpc.DialOption{grpc.WithResolvers(res)}, AgentID: "platform-sync-acme", Version: "test",
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Log: testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = up.Close() }()
	updates := make(chan uplink.Update, 16)
	rctx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- up.Run(rctx, func(u uplink.Update) { updates <- u }) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()
	next := func(what string) uplink.Update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no configuration arrived", what)
		}
		return uplink.Update{}
	}
	devices := func(u uplink.Update) int32 {
		s, ok := u.Bundle.Sources[ns["acme"]+"/lab"]
		if !ok || s.Faker == nil {
			t.Fatalf("bundle lacks the faker source: %s", u.Raw)
		}
		return s.Faker.Devices
	}
	setDevices := func(n int) {
		t.Helper()
		src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns["acme"], Name: "lab"}}
		if err := env.Client.Patch(ctx, src, client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"faker":{"devices":%d}}}`, n))); err != nil {
			t.Fatal(err)
		}
	}

	if got := devices(next("first config")); got != 100 {
		t.Fatalf("first config has %d devices", got)
	}
	if id, slug := up.Tenant(); slug != "acme" || id == "" {
		t.Fatalf("tenant from Hello: %q %q", id, slug)
	}

	// Replica a goes away (a rollout): the stream moves to b, and b pushes the next edit.
	a.stop()
	setDevices(200)
	if got := devices(next("after replica a stopped")); got != 200 {
		t.Fatalf("config after a stopped has %d devices", got)
	}

	// a comes back on a new address and b goes away: the worker follows again.
	a2 := startReplica(t, gwUser.Config(), gwFiles, "a2")
	res.UpdateState(resolver.State{Addresses: []resolver.Address{{Addr: b.addr}, {Addr: a2.addr}}})
	b.stop()
	setDevices(300)
	if got := devices(next("after replica b stopped")); got != 300 {
		t.Fatalf("config after b stopped has %d devices", got)
	}
	select {
	case u := <-updates:
		t.Fatalf("an unchanged configuration was delivered again: %s", u.Version)
	case <-time.After(time.Second):
	}
}
