package sweep_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/gateway/sweep"
	"github.com/serviceradar/sync-operator/wire/bundle"
)

func TestBuildMergesSourcesPerDevice(t *testing.T) {
	sources := []sweep.Source{
		{UID: "a", Sweep: bundle.Sweep{Enabled: true, Ports: []int32{443, 22}, Modes: []string{"tcp"}, Networks: []string{"10.1.0.0/16"}, IntervalSec: 600}},
		{UID: "b", Sweep: bundle.Sweep{Enabled: true, Ports: []int32{22, 161}, Modes: []string{"icmp", "tcp"}, IntervalSec: 300}},
	}
	targets := []store.Target{
		{IP: "10.1.0.9", Hostname: "sw-9", SourceUID: "b"},
		{IP: "10.1.0.2", Hostname: "plc-2", SourceUID: "a"},
		{IP: "10.1.0.9", Hostname: "sw-9", SourceUID: "a"},
		{IP: "10.1.0.7", SourceUID: "unknown-source"},
	}
	got := sweep.Build(sources, targets)
	want := "networks=[10.1.0.0/16] modes=[icmp tcp] interval=300 targets=[10.1.0.2 plc-2 [22 443] 10.1.0.9 sw-9 [22 161 443]]"
	var ts []any
	for _, dt := range got.DeviceTargets {
		ts = append(ts, dt.Ip, dt.Hostname, dt.Ports)
	}
	if s := fmt.Sprintf("networks=%v modes=%v interval=%d targets=%v", got.Networks, got.SweepModes, got.SweepIntervalSec, ts); s != want {
		t.Fatalf("got  %s\nwant %s", s, want)
	}
	if empty := sweep.Build(nil, targets); len(empty.DeviceTargets) != 0 || len(empty.Networks) != 0 {
		t.Fatalf("no sweep sources, yet %v", empty)
	}
}

// upstreamForm is config_json.sweep as ServiceRadar's agents decode it.
type upstreamForm struct {
	ConfigHash string `json:"config_hash"`
	Groups     []struct {
		ID           string   `json:"id"`
		SweepGroupID string   `json:"sweep_group_id"`
		Targets      []string `json:"targets"`
		Ports        []int    `json:"ports"`
		Modes        []string `json:"modes"`
		Schedule     struct{ Type, Interval, Cron string }
		Settings     struct {
			Concurrency int
			Timeout     string
		}
		DeviceTargets []struct {
			Network    string            `json:"network"`
			SweepModes []string          `json:"sweep_modes"`
			Source     string            `json:"source"`
			Metadata   map[string]string `json:"metadata"`
		} `json:"device_targets"`
	} `json:"groups"`
}

func TestGroupsInUpstreamForm(t *testing.T) {
	sources := []sweep.Source{
		{UID: "b", Type: "netbox", Sweep: bundle.Sweep{Enabled: true, Ports: []int32{161, 22}, Modes: []string{"tcp", "icmp"}, IntervalSec: 900}},
		{UID: "a", Type: "armis", Sweep: bundle.Sweep{Enabled: true, Networks: []string{"10.1.0.0/16"}, Modes: []string{"icmp"}, IntervalSec: 90}},
	}
	targets := []store.Target{
		{IP: "10.1.0.9", Hostname: "sw-9", SourceUID: "b"},
		{IP: "10.1.0.2", Hostname: "plc-2", SourceUID: "a"},
		{IP: "10.1.0.9", Hostname: "sw-9", SourceUID: "a"},
		{IP: "fd00::7", SourceUID: "b"},
		{IP: "::ffff:10.1.0.5", SourceUID: "b"},
		{IP: "not-an-ip", SourceUID: "b"},
		{IP: "10.1.0.8", SourceUID: "unknown-source"},
	}
	raw, err := json.Marshal(sweep.Groups(sources, targets))
	if err != nil {
		t.Fatal(err)
	}
	var got upstreamForm
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Groups) != 2 || got.ConfigHash == "" {
		t.Fatalf("sweep %s", raw)
	}
	a, b := got.Groups[0], got.Groups[1]
	for _, c := range []struct{ what, got, want string }{
		{"group a ids", a.ID + "," + a.SweepGroupID, "a,a"},
		{"group a targets", fmt.Sprint(a.Targets), "[10.1.0.0/16 10.1.0.2/32 10.1.0.9/32]"},
		{"group a schedule", fmt.Sprint(a.Schedule), "{interval 90s }"},
		{"group a ports", fmt.Sprint(a.Ports), "[]"},
		{"group b targets", fmt.Sprint(b.Targets), "[10.1.0.5/32 10.1.0.9/32 fd00::7/128]"},
		{"group b ports and modes", fmt.Sprint(b.Ports, b.Modes), "[22 161] [icmp tcp]"},
		{"group b schedule", fmt.Sprint(b.Schedule), "{interval 15m }"},
		{"group b device targets", fmt.Sprint(len(b.DeviceTargets), b.DeviceTargets[1]), "3 {10.1.0.9/32 [icmp tcp] netbox map[hostname:sw-9 integration_source_uid:b]}"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %s, want %s", c.what, c.got, c.want)
		}
	}
}

func TestGroupsHashChangesExactlyWithContent(t *testing.T) {
	base := func() ([]sweep.Source, []store.Target) {
		return []sweep.Source{
				{UID: "a", Type: "armis", Sweep: bundle.Sweep{Enabled: true, Ports: []int32{22}, Modes: []string{"icmp"}, IntervalSec: 300}},
				{UID: "b", Type: "netbox", Sweep: bundle.Sweep{Enabled: true, Networks: []string{"10.2.0.0/24"}, IntervalSec: 600}},
			}, []store.Target{
				{IP: "10.1.0.1", Hostname: "one", SourceUID: "a"},
				{IP: "10.1.0.2", SourceUID: "b"},
			}
	}
	srcs, tgts := base()
	want := sweep.Groups(srcs, tgts).ConfigHash
	for _, tc := range []struct {
		name    string
		mutate  func([]sweep.Source, []store.Target) ([]sweep.Source, []store.Target)
		changed bool
	}{
		{"nothing", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) { return s, t }, false},
		{"sources and devices in another order", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) {
			return []sweep.Source{s[1], s[0]}, []store.Target{t[1], t[0]}
		}, false},
		{"a device reported twice", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) { return s, append(t, t[0]) }, false},
		{"a port", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) {
			s[0].Sweep.Ports = []int32{22, 443}
			return s, t
		}, true},
		{"a mode", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) {
			s[1].Sweep.Modes = []string{"tcp"}
			return s, t
		}, true},
		{"the interval", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) {
			s[0].Sweep.IntervalSec = 600
			return s, t
		}, true},
		{"a network", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) {
			s[1].Sweep.Networks = nil
			return s, t
		}, true},
		{"a device more", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) {
			return s, append(t, store.Target{IP: "10.1.0.3", SourceUID: "a"})
		}, true},
		{"a device retracted", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) { return s, t[:1] }, true},
		{"a hostname", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) {
			t[1].Hostname = "two"
			return s, t
		}, true},
		{"a source's sweep turned off", func(s []sweep.Source, t []store.Target) ([]sweep.Source, []store.Target) { return s[:1], t }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, tg := base()
			got := sweep.Groups(tc.mutate(s, tg)).ConfigHash
			if (got != want) != tc.changed {
				t.Fatalf("hash %s, base %s, want changed=%v", got, want, tc.changed)
			}
		})
	}
}

func TestNoSweepSourcesClearTheAgentsTargets(t *testing.T) {
	// Upstream agents apply nothing without a "sweep" key and clear their
	// targets on an empty groups list: the key and the list are always there.
	raw, err := json.Marshal(bundle.Agent{Sweep: sweep.Groups(nil, []store.Target{{IP: "10.0.0.1", SourceUID: "a"}})})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Sweep map[string]json.RawMessage `json:"sweep"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if string(got.Sweep["groups"]) != "[]" || len(got.Sweep["config_hash"]) < 10 {
		t.Fatalf("config_json %s", raw)
	}
}
