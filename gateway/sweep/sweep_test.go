package sweep_test

import (
	"fmt"
	"testing"

	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/gateway/sweep"
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
