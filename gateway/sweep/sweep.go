// Package sweep derives an agent's sweep configuration (DESIGN.md section 7)
// from the sources of its tenant and partition that have sweep enabled and
// the devices they reported. It is pure, and its output is ordered, so equal
// inputs give equal versions.
//
// The sweep travels in two forms: typed in GetConfig field 10 (Build), and in
// config_json.sweep as the groups ServiceRadar's own agents read (Groups).
//
// Which devices are sweep targets: every device with an IP in the agent's
// partition that a sweep-enabled source of the agent's tenant reports and
// has not retracted (see store.SweepTargets). A device's availability is not
// a filter: it is what the sweep measures, so a device that a source without
// an availability signal reported (NetBox, say) is swept, and so is one
// that a source or an earlier sweep found down (otherwise it could never be
// seen coming back). A device that every sweep-enabled source retracted
// (a complete run without it, or its source deleted with Retract) is not.
package sweep

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"github.com/serviceradar/sync-operator/gateway/store"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/bundle"
)

// Source is a source with sweep enabled.
type Source struct {
	// UID is the IntegrationSource's uid.
	UID string
	// Type is its integration type ("armis", "netbox", "faker").
	Type string
	// Sweep is its sweep settings.
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

// ScheduleInterval is the schedule type of every group this gateway sends.
const ScheduleInterval = "interval"

// Groups returns config_json.sweep in upstream's group form: one group per
// source, ordered by uid, each with the source's networks and one host
// network per device it reports as targets, its ports, modes and interval,
// and its devices as device_targets. Targets whose IP does not parse are
// left out (an agent would drop them anyway). No sources give no groups,
// which tells an agent to clear its sweep.
func Groups(sources []Source, targets []store.Target) bundle.AgentSweep {
	bySource := make(map[string][]store.Target, len(sources))
	for _, t := range targets {
		bySource[t.SourceUID] = append(bySource[t.SourceUID], t)
	}
	sorted := slices.SortedFunc(slices.Values(sources), func(a, b Source) int { return cmp.Compare(a.UID, b.UID) })
	groups := make([]bundle.SweepGroup, 0, len(sorted))
	for _, s := range sorted {
		g := bundle.SweepGroup{
			ID: s.UID, SweepGroupID: s.UID,
			Targets:       append([]string{}, s.Sweep.Networks...),
			Ports:         append([]int32{}, s.Sweep.Ports...),
			Modes:         append([]string{}, s.Sweep.Modes...),
			Schedule:      bundle.SweepSchedule{Type: ScheduleInterval, Interval: interval(s.Sweep.IntervalSec)},
			DeviceTargets: []bundle.SweepDeviceTarget{},
		}
		seen := map[string]bool{}
		for _, t := range bySource[s.UID] {
			network, ok := hostNetwork(t.IP)
			if !ok || seen[network] {
				continue
			}
			seen[network] = true
			g.Targets = append(g.Targets, network)
			dt := bundle.SweepDeviceTarget{Network: network, SweepModes: g.Modes, Source: s.Type,
				Metadata: map[string]string{"integration_source_uid": s.UID}}
			if t.Hostname != "" {
				dt.Metadata["hostname"] = t.Hostname
			}
			g.DeviceTargets = append(g.DeviceTargets, dt)
		}
		slices.Sort(g.Targets)
		g.Targets = slices.Compact(g.Targets)
		slices.Sort(g.Ports)
		g.Ports = slices.Compact(g.Ports)
		slices.Sort(g.Modes)
		g.Modes = slices.Compact(g.Modes)
		slices.SortFunc(g.DeviceTargets, func(a, b bundle.SweepDeviceTarget) int { return cmp.Compare(a.Network, b.Network) })
		groups = append(groups, g)
	}
	return bundle.AgentSweep{ConfigHash: hash(groups), Groups: groups}
}

// hash is the hex of the first 16 bytes of the SHA-256 of the groups'
// JSON: every slice is sorted and encoding/json orders struct fields and
// map keys, so equal content gives an equal hash and any change another.
func hash(groups []bundle.SweepGroup) string {
	raw, err := json.Marshal(groups)
	if err != nil {
		// Strings, ints and string maps always encode.
		panic(fmt.Sprintf("encoding sweep groups: %v", err))
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16])
}

// hostNetwork is the single-host CIDR of an IP: /32 for IPv4 (an
// IPv4-mapped IPv6 address included), /128 for IPv6.
func hostNetwork(ip string) (string, bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "", false
	}
	addr = addr.Unmap().WithZone("")
	return netip.PrefixFrom(addr, addr.BitLen()).String(), true
}

// interval writes seconds as a Go duration in its largest whole unit
// ("15m", "1h", "90s"); 0 is "" (the agent's default).
func interval(sec int64) string {
	switch {
	case sec <= 0:
		return ""
	case sec%3600 == 0:
		return fmt.Sprintf("%dh", sec/3600)
	case sec%60 == 0:
		return fmt.Sprintf("%dm", sec/60)
	default:
		return fmt.Sprintf("%ds", sec)
	}
}
