// Package sweep derives an agent's sweep configuration (GetConfig field 10,
// DESIGN.md section 7) from the sources of its tenant and partition that
// have sweep enabled and the available devices they reported: device
// targets with the sources' ports, the sources' explicit networks, their
// modes and the shortest interval. It is pure, and its output is ordered,
// so equal inputs give equal versions.
package sweep

import (
	"cmp"
	"slices"

	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/gateway/store"
	pb "github.com/serviceradar/sync-operator/proto"
)

// Source is a source with sweep enabled.
type Source struct {
	UID   string
	Sweep bundle.Sweep
}

// Build returns the sweep configuration; nil sources give an empty one.
func Build(sources []Source, targets []store.Target) *pb.SweepConfig {
	out := &pb.SweepConfig{}
	bySource := map[string]bundle.Sweep{}
	for _, s := range sources {
		bySource[s.UID] = s.Sweep
		out.Networks = append(out.Networks, s.Sweep.Networks...)
		out.SweepModes = append(out.SweepModes, s.Sweep.Modes...)
		iv := int32(min(s.Sweep.IntervalSec, 1<<31-1)) //nolint:gosec // clamped to int32 first
		if iv > 0 && (out.SweepIntervalSec == 0 || iv < out.SweepIntervalSec) {
			out.SweepIntervalSec = iv
		}
	}
	slices.Sort(out.Networks)
	out.Networks = slices.Compact(out.Networks)
	slices.Sort(out.SweepModes)
	out.SweepModes = slices.Compact(out.SweepModes)

	// One target per IP, with the ports of every source that reported it.
	byIP := map[string]*pb.DeviceTarget{}
	for _, t := range targets {
		sw, ok := bySource[t.SourceUID]
		if !ok {
			continue
		}
		dt := byIP[t.IP]
		if dt == nil {
			dt = &pb.DeviceTarget{Ip: t.IP, Hostname: t.Hostname}
			byIP[t.IP] = dt
			out.DeviceTargets = append(out.DeviceTargets, dt)
		}
		dt.Ports = append(dt.Ports, sw.Ports...)
	}
	for _, dt := range out.DeviceTargets {
		slices.Sort(dt.Ports)
		dt.Ports = slices.Compact(dt.Ports)
	}
	slices.SortFunc(out.DeviceTargets, func(a, b *pb.DeviceTarget) int { return cmp.Compare(a.Ip, b.Ip) })
	return out
}
