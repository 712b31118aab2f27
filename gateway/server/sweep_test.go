package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/store"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
)

// agentSweep is config_json as ServiceRadar's agents decode it: only the
// "sweep" key, in its group form.
type agentSweep struct {
	Sweep *struct {
		ConfigHash string `json:"config_hash"`
		Groups     []struct {
			ID            string   `json:"id"`
			SweepGroupID  string   `json:"sweep_group_id"`
			Targets       []string `json:"targets"`
			Ports         []int    `json:"ports"`
			Modes         []string `json:"modes"`
			Schedule      struct{ Type, Interval, Cron string }
			DeviceTargets []struct {
				Network    string   `json:"network"`
				SweepModes []string `json:"sweep_modes"`
				Source     string   `json:"source"`
			} `json:"device_targets"`
		} `json:"groups"`
	} `json:"sweep"`
}

// checkAgentSweep runs inside TestConfigPlane: an agent's GetConfig carries
// the sweep in both forms, field 10 and config_json.sweep's groups, whose
// config_hash changes exactly when the sweep does; a device a source reports
// without availability is swept, a retracted one is not.
func checkAgentSweep(t *testing.T, w *world) {
	ctx := context.Background()
	src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: "acme-lab", Namespace: w.ns["acme"]}, Spec: v1alpha1.IntegrationSourceSpec{
		Type: v1alpha1.IntegrationNetBox, Endpoint: "https://acme-lab.example", CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"},
		SyncServiceRef: v1alpha1.SyncServiceReference{Name: "edge"}, Partition: "lab",
		Sweep: &v1alpha1.SweepSpec{Enabled: true, Modes: []v1alpha1.SweepMode{"icmp", "tcp"}, Ports: []int32{443, 22}, Networks: []string{"10.77.1.0/24"},
			Interval: &metav1.Duration{Duration: 15 * time.Minute}}}}
	create(t, src)
	t.Cleanup(func() { _ = env.Client.Delete(ctx, src) })
	uid := string(src.UID)
	// NetBox says nothing about availability; a complete run of two devices
	// after one of three retracts the third.
	run := func(ips ...string) {
		t.Helper()
		seg := store.Segment{TenantID: w.tenantID["acme"], TenantSlug: "acme", Partition: "lab", Integration: "netbox", SourceUID: uid,
			SyncServiceID: "ss", AgentID: "edge", RunID: uuid.NewString(), RunComplete: true, FullFetch: true}
		for i, ip := range ips {
			seg.Devices = append(seg.Devices, store.Device{DeviceID: fmt.Sprint(i), IP: ip, Hostname: fmt.Sprintf("lab-%d", i),
				Metadata: map[string]string{"integration_type": "netbox", "netbox_device_id": fmt.Sprint(i)}})
		}
		if _, err := w.store.ApplySegment(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}
	run("10.77.0.1", "10.77.0.2", "10.77.0.3")

	agent := w.client(t, svid(t, w, "agent/acme/lab/agent-lab"))
	get := func(what string, ok func(*pb.AgentConfigResponse, agentSweep) bool) (*pb.AgentConfigResponse, agentSweep) {
		t.Helper()
		var cfg *pb.AgentConfigResponse
		var sw agentSweep
		test.Eventually(t, what, 30*time.Second, func() bool {
			var err error
			if cfg, err = agent.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "agent-lab"}); err != nil {
				t.Fatal(err)
			}
			sw = agentSweep{}
			if err := json.Unmarshal(cfg.ConfigJson, &sw); err != nil {
				t.Fatal(err)
			}
			return sw.Sweep != nil && ok(cfg, sw)
		})
		return cfg, sw
	}
	groups := func(n int) func(*pb.AgentConfigResponse, agentSweep) bool {
		return func(_ *pb.AgentConfigResponse, sw agentSweep) bool { return len(sw.Sweep.Groups) == n }
	}
	cfg, sw := get("the agent's sweep has the lab source", groups(1))
	g := sw.Sweep.Groups[0]
	for _, c := range []struct{ what, got, want string }{
		{"group ids", g.ID + " " + g.SweepGroupID, uid + " " + uid},
		{"targets", fmt.Sprint(g.Targets), "[10.77.0.1/32 10.77.0.2/32 10.77.0.3/32 10.77.1.0/24]"},
		{"ports and modes", fmt.Sprint(g.Ports, g.Modes), "[22 443] [icmp tcp]"},
		{"schedule", fmt.Sprint(g.Schedule), "{interval 15m }"},
		{"device targets", fmt.Sprint(len(g.DeviceTargets), g.DeviceTargets[0]), "3 {10.77.0.1/32 [icmp tcp] netbox}"},
		{"field 10", fmt.Sprint(len(cfg.GetSweep().GetDeviceTargets()), cfg.GetSweep().GetNetworks(), cfg.GetSweep().GetSweepIntervalSec()), "3 [10.77.1.0/24] 900"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %s, want %s", c.what, c.got, c.want)
		}
	}
	first := sw.Sweep.ConfigHash
	// Nothing changed: the same hash and version.
	again, sw2 := get("a second GetConfig", groups(1))
	if sw2.Sweep.ConfigHash != first || again.ConfigVersion != cfg.ConfigVersion {
		t.Fatalf("unchanged sweep: hash %s -> %s, version %s -> %s", first, sw2.Sweep.ConfigHash, cfg.ConfigVersion, again.ConfigVersion)
	}
	// A retraction drops the device and changes the hash.
	run("10.77.0.1", "10.77.0.2")
	_, sw = get("the retracted device leaves the sweep", func(_ *pb.AgentConfigResponse, sw agentSweep) bool {
		return len(sw.Sweep.Groups) == 1 && len(sw.Sweep.Groups[0].DeviceTargets) == 2
	})
	retracted := sw.Sweep.ConfigHash
	if retracted == first || fmt.Sprint(sw.Sweep.Groups[0].Targets) != "[10.77.0.1/32 10.77.0.2/32 10.77.1.0/24]" {
		t.Fatalf("after a retraction: hash %s (was %s), targets %v", retracted, first, sw.Sweep.Groups[0].Targets)
	}
	// A port changes the hash.
	patch := func(p string) {
		t.Helper()
		if err := env.Client.Patch(ctx, src, client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"spec":{"sweep":{"ports":[22]}}}`)
	_, sw = get("the port change reaches the agent", func(_ *pb.AgentConfigResponse, sw agentSweep) bool {
		return len(sw.Sweep.Groups) == 1 && fmt.Sprint(sw.Sweep.Groups[0].Ports) == "[22]"
	})
	if sw.Sweep.ConfigHash == retracted || sw.Sweep.ConfigHash == first {
		t.Fatalf("a port change kept the hash %s", sw.Sweep.ConfigHash)
	}
	// Another tenant's agent in the same partition gets none of it.
	other := w.client(t, svid(t, w, "agent/globex/lab/agent-lab"))
	ocfg, err := other.GetConfig(ctx, &pb.AgentConfigRequest{AgentId: "agent-lab"})
	if err != nil {
		t.Fatal(err)
	}
	var osw agentSweep
	if err := json.Unmarshal(ocfg.ConfigJson, &osw); err != nil || osw.Sweep == nil || len(osw.Sweep.Groups) != 0 || len(ocfg.GetSweep().GetDeviceTargets()) != 0 {
		t.Fatalf("globex's lab agent: %s %v", ocfg.ConfigJson, err)
	}
	// Sweep turned off: the key stays, with no groups, so agents clear their targets.
	patch(`{"spec":{"sweep":{"enabled":false}}}`)
	_, sw = get("the agent's sweep is cleared", groups(0))
	if sw.Sweep.ConfigHash == "" {
		t.Fatal("an empty sweep without a config_hash")
	}
}
