// Package dire is device identity reconciliation (DESIGN.md section 7): it
// turns the device updates of one segment into canonical devices of one
// tenant and partition. Strong identifiers decide, strongest first and always
// qualified by integration type; MACs are normalized, and a locally
// administered MAC never merges devices on its own; IP is weak and only
// finds a device for an update that carries nothing stronger, by the
// update's addresses and the device's (see weakUID). Canonical uids are
// deterministic, so replays converge. The package is pure: the store looks
// up what already exists (one batched query per segment) and writes the plan.
package dire

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/wire/results"
)

// Ranks of identifiers: higher is stronger.
const (
	RankWeak        = 0 // a locally administered MAC: finds, never merges
	RankMAC         = 1
	RankIntegration = 2 // an integration id other than Armis and NetBox
	RankNetBox      = 3
	RankArmis       = 4
)

// Identifier types beyond integration ids.
const (
	TypeMAC      = "mac"
	TypeLocalMAC = "mac_local"
)

// Confidence of an identifier.
const (
	ConfidenceHigh   = "high"
	ConfidenceMedium = "medium"
)

// Identifier is one identifier of a device.
type Identifier struct {
	Type, Value string
	Rank        int
}

// Confidence is how far the identifier is trusted.
func (i Identifier) Confidence() string {
	if i.Rank == RankWeak {
		return ConfidenceMedium
	}
	return ConfidenceHigh
}

// integration reports whether the identifier is an integration id.
func (i Identifier) integration() bool { return i.Rank >= RankIntegration }

// integrationRank is the rank of an integration type's device id.
func integrationRank(integration string) int {
	switch integration {
	case "armis":
		return RankArmis
	case "netbox":
		return RankNetBox
	default:
		return RankIntegration
	}
}

// RankOf is the rank of a stored identifier type.
func RankOf(identifierType string) int {
	switch identifierType {
	case TypeMAC:
		return RankMAC
	case TypeLocalMAC:
		return RankWeak
	}
	for _, suffix := range []string{"_device_id", "_vm_id"} {
		if integration, ok := strings.CutSuffix(identifierType, suffix); ok {
			return integrationRank(integration)
		}
	}
	return RankWeak
}

// Update is one device update, already taken apart by the caller.
type Update struct {
	// Integration is the integration type of the reporting source.
	Integration string
	// DeviceID is the source's own id of the device (armis_device_id, ...).
	DeviceID string
	// DeviceIDType is the kind of id DeviceID is: "<integration>_device_id"
	// when empty, or "<integration>_vm_id" for an integration's virtual
	// machine (NetBox numbers VMs apart from devices).
	DeviceIDType string
	// MACs are all MACs the source reported, in any notation.
	MACs []string
	// IP is the primary IP.
	IP string
}

// Identifiers returns the update's identifiers, strongest first. The
// integration id is qualified by the integration type ("armis_device_id",
// "netbox_vm_id").
func Identifiers(u Update) []Identifier {
	var out []Identifier
	if u.DeviceID != "" && u.Integration != "" {
		typ := u.Integration + "_device_id"
		if u.DeviceIDType == u.Integration+"_vm_id" {
			typ = u.DeviceIDType
		}
		out = append(out, Identifier{Type: typ, Value: u.DeviceID, Rank: integrationRank(u.Integration)})
	}
	var seen map[string]bool // only for long MAC lists; short ones are scanned
	for _, m := range u.MACs {
		n := results.NormalizeMAC(m)
		if n == "" {
			continue
		}
		if len(u.MACs) > 16 {
			if seen == nil {
				seen = make(map[string]bool, len(u.MACs))
			}
			if seen[n] {
				continue
			}
			seen[n] = true
		} else if slices.ContainsFunc(out, func(id Identifier) bool { return id.Value == n && id.Rank <= RankMAC }) {
			continue
		}
		if results.LocallyAdministered(n) {
			out = append(out, Identifier{Type: TypeLocalMAC, Value: n, Rank: RankWeak})
		} else {
			out = append(out, Identifier{Type: TypeMAC, Value: n, Rank: RankMAC})
		}
	}
	slices.SortStableFunc(out, func(a, b Identifier) int {
		return cmp.Or(cmp.Compare(b.Rank, a.Rank), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
	})
	return out
}

// UID is the canonical uid of a new device first known by its strongest
// identifier: the same in every replay, distinct per tenant and partition.
func UID(tenantID, partition string, strongest Identifier) string {
	ns := uuid.NewSHA1(uuid.NameSpaceURL, []byte("serviceradar:tenant:"+tenantID))
	return "sr:" + uuid.NewSHA1(ns, []byte(partition+"\x00"+strongest.Type+"\x00"+strongest.Value)).String()
}

// IPs are the addresses of an update, as weak evidence of which device it
// is: its primary IP first, then every other address of allIPs (the
// comma-separated all_ips of its metadata) that can tell devices apart
// (Distinctive), blanks and repeats left out.
func IPs(ip, allIPs string) []string {
	ip = strings.TrimSpace(ip)
	var out []string
	if ip != "" {
		out = append(out, ip)
	}
	var seen map[string]bool // only for long lists; short ones are scanned
	for a := range strings.SplitSeq(allIPs, ",") {
		if a = strings.TrimSpace(a); a == "" || !Distinctive(a) {
			continue
		}
		if seen == nil && len(out) > 16 {
			seen = make(map[string]bool, 2*len(out))
			for _, b := range out {
				seen[b] = true
			}
		}
		if seen != nil {
			if seen[a] {
				continue
			}
			seen[a] = true
		} else if slices.Contains(out, a) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// Distinctive reports whether an address can find a device: not a loopback,
// unspecified, link-local or multicast address, which many devices have at
// once (every router's fe80::1, 127.0.0.1). A string that is no address is
// compared as it is.
func Distinctive(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return true
	}
	return !a.IsLoopback() && !a.IsUnspecified() && !a.IsLinkLocalUnicast() && !a.IsMulticast()
}

// IPUID is the uid of a new device known only by its IP.
func IPUID(tenantID, partition, ip string) string {
	return UID(tenantID, partition, Identifier{Type: "ip", Value: ip})
}

// Key identifies an identifier in lookups.
type Key struct{ Type, Value string }

// Known is what the store found for a segment: the device of every
// identifier it asked about, the integration ids those devices already
// hold (to refuse merges of devices that two ids of one integration tell
// apart), and devices by IP for updates with no identifier at all.
type Known struct {
	// Device is the device holding each identifier asked about.
	Device map[Key]string
	// Integrations are the integration ids of the known devices, by uid.
	Integrations map[string][]Identifier
	// ByIP is, for each address asked about, the device whose ip it is (the
	// smallest uid when several are).
	ByIP map[string]string
	// ByOtherIP is, for each primary address of an update asked about, the
	// device that lists it among its other addresses (all_ips), when exactly
	// one device of the partition does: an address two devices list (the
	// virtual IP of a redundancy pair, an anycast address) tells neither.
	ByOtherIP map[string]string
}

// Merge is two existing devices found to be one.
type Merge struct {
	From, Into string
	// By is the identifier that joined them.
	By Identifier
}

// Plan is the resolution of a segment.
type Plan struct {
	// UIDs gives the canonical uid of each update, by index.
	UIDs []string
	// Merges are applied before the updates.
	Merges []Merge
	// Claims are the identifiers to record, each with its device.
	Claims []Claim
}

// Claim records that an identifier belongs to a device.
type Claim struct {
	Identifier
	UID string
}

// group is a node of the union-find: an update (index), with the existing
// devices attached to it.
type group struct {
	parent int
	// ints holds the integration ids of the group, by type.
	ints map[string]string
	// devices are the existing devices in the group.
	devices []string
	// strongest identifier of the group, for new uids and the canonical pick.
	strongest *Identifier
}

// resolver is the union-find of one segment: a group per update, joined
// by the identifiers updates share and by the existing devices (known)
// that hold them, never across integration ids that tell devices apart.
type resolver struct {
	groups []group
	known  Known
	// owner is the update whose group holds an existing device.
	owner map[string]int
}

// newResolver starts with each update its own group, holding its
// integration ids and its strongest identifier.
func newResolver(ids [][]Identifier, known Known) *resolver {
	r := &resolver{groups: make([]group, len(ids)), known: known, owner: map[string]int{}}
	for i := range r.groups {
		r.groups[i] = group{parent: i, ints: map[string]string{}}
		addInts(r.groups[i].ints, ids[i])
		for _, id := range ids[i] {
			if id.Rank > RankWeak && stronger(r.groups[i].strongest, id) {
				idc := id
				r.groups[i].strongest = &idc
			}
		}
	}
	return r
}

// find is the root of update i's group, halving the path on the way.
func (r *resolver) find(i int) int {
	g := r.groups
	for g[i].parent != i {
		g[i].parent = g[g[i].parent].parent
		i = g[i].parent
	}
	return i
}

// conflicts reports whether two sets of integration ids disagree.
func conflicts(a, b map[string]string) bool {
	for t, v := range a {
		if w, ok := b[t]; ok && w != v {
			return true
		}
	}
	return false
}

// addInts adds the integration ids among ids to dst, by type.
func addInts(dst map[string]string, ids []Identifier) {
	for _, id := range ids {
		if id.integration() {
			dst[id.Type] = id.Value
		}
	}
}

// deviceInts are an existing device's integration ids, as a map.
func (r *resolver) deviceInts(uid string) map[string]string {
	m := map[string]string{}
	addInts(m, r.known.Integrations[uid])
	return m
}

// stronger reports whether b is a stronger identifier than a (nil): higher
// rank, then smaller type and value, so the pick is the same in every replay.
func stronger(a *Identifier, b Identifier) bool {
	return a == nil || b.Rank > a.Rank || (b.Rank == a.Rank && (b.Type < a.Type || (b.Type == a.Type && b.Value < a.Value)))
}

// attach puts an existing device into update i's group unless their
// integration ids tell them apart. A device another group of the segment
// holds joins the two groups, or stays with the other one when their
// integration ids differ (one device never takes two ids of one
// integration).
func (r *resolver) attach(i int, uid string) bool {
	root := r.find(i)
	if o, ok := r.owner[uid]; ok {
		return r.find(o) == root || r.union(o, i)
	}
	g := &r.groups[root]
	if slices.Contains(g.devices, uid) {
		return true
	}
	di := r.deviceInts(uid)
	if conflicts(g.ints, di) {
		return false
	}
	for _, d := range g.devices {
		if conflicts(di, r.deviceInts(d)) {
			return false
		}
	}
	g.devices = append(g.devices, uid)
	r.owner[uid] = root
	for t, v := range di {
		g.ints[t] = v
	}
	return true
}

// union joins the groups of updates i and j unless their integration ids,
// or those of their existing devices, tell them apart.
func (r *resolver) union(i, j int) bool {
	a, b := r.find(i), r.find(j)
	if a == b {
		return true
	}
	ga, gb := &r.groups[a], &r.groups[b]
	if conflicts(ga.ints, gb.ints) {
		return false
	}
	for _, d := range gb.devices {
		for _, e := range ga.devices {
			if conflicts(r.deviceInts(d), r.deviceInts(e)) {
				return false
			}
		}
	}
	gb.parent = a
	for t, v := range gb.ints {
		ga.ints[t] = v
	}
	ga.devices = append(ga.devices, gb.devices...)
	if gb.strongest != nil && stronger(ga.strongest, *gb.strongest) {
		ga.strongest = gb.strongest
	}
	return true
}

// join takes the segment's identifiers strongest first, across the whole
// segment: updates that share one are one device, and so is the device that
// already holds it. It returns, for each existing device attached, the
// identifier that attached it first.
func (r *resolver) join(ids [][]Identifier) map[string]Identifier {
	type occurrence struct {
		i  int
		id Identifier
	}
	var occ []occurrence
	for i := range ids {
		for _, id := range ids[i] {
			if id.Rank > RankWeak {
				occ = append(occ, occurrence{i, id})
			}
		}
	}
	slices.SortStableFunc(occ, func(a, b occurrence) int { return cmp.Compare(b.id.Rank, a.id.Rank) })
	first := map[Key]int{}
	mergedBy := map[string]Identifier{}
	for _, o := range occ {
		k := Key{o.id.Type, o.id.Value}
		if j, ok := first[k]; ok {
			r.union(j, o.i)
		} else {
			first[k] = o.i
		}
		if uid, ok := r.known.Device[k]; ok {
			if r.attach(o.i, uid) {
				if _, seen := mergedBy[uid]; !seen {
					mergedBy[uid] = o.id
				}
			}
		}
	}
	return mergedBy
}

// plan names each group's device: the existing device holding the
// strongest identifier (the group's other devices merge into it), else a
// new uid from the group's strongest identifier, else one from its weak
// evidence (weakUID); every identifier is claimed for its update's device.
func (r *resolver) plan(tenantID, partition string, ids [][]Identifier, ips [][]string, mergedBy map[string]Identifier) Plan {
	plan := Plan{UIDs: make([]string, len(ids))}
	canonical := map[int]string{}
	for i := range ids {
		root := r.find(i)
		if uid, ok := canonical[root]; ok {
			plan.UIDs[i] = uid
			continue
		}
		g := &r.groups[root]
		var uid string
		switch {
		case len(g.devices) > 0:
			// The device holding the strongest identifier stays; the others merge into it.
			uid = pickCanonical(g.devices, r.known)
			for _, d := range g.devices {
				if d != uid {
					plan.Merges = append(plan.Merges, Merge{From: d, Into: uid, By: mergedBy[d]})
				}
			}
		case g.strongest != nil:
			uid = UID(tenantID, partition, *g.strongest)
		default:
			uid = weakUID(tenantID, partition, ids[i], ips[i], r.known)
		}
		canonical[root] = uid
		plan.UIDs[i] = uid
	}
	for i := range ids {
		for _, id := range ids[i] {
			plan.Claims = append(plan.Claims, Claim{Identifier: id, UID: plan.UIDs[i]})
		}
	}
	return plan
}

// Resolve plans a segment. ids[i] are the identifiers of update i
// (Identifiers), ips[i] its addresses, primary IP first (IPs); only an
// update without identifiers is placed by its addresses, so ips[i] of the
// others may be nil.
func Resolve(tenantID, partition string, ids [][]Identifier, ips [][]string, known Known) Plan {
	r := newResolver(ids, known)
	mergedBy := r.join(ids)
	return r.plan(tenantID, partition, ids, ips, mergedBy)
}

// pickCanonical is the device of a group holding the strongest integration
// id (ties: the smallest uid), so merges always go the same way.
func pickCanonical(devices []string, known Known) string {
	best, bestRank := "", -1
	for _, d := range devices {
		rank := RankMAC
		for _, id := range known.Integrations[d] {
			rank = max(rank, id.Rank)
		}
		if rank > bestRank || (rank == bestRank && d < best) {
			best, bestRank = d, rank
		}
	}
	return best
}

// weakUID places an update with no strong identifier: a locally
// administered MAC finds the one device that holds it. An update with no
// identifier at all is placed by its addresses: its primary IP finds the
// device whose ip it is, else the one device that lists it among its other
// addresses; then each of its other addresses, in order, finds the device
// whose ip it is. The first found decides, so an update whose addresses are
// spread over several devices joins one and never merges them, and two
// updates that only share a secondary address (a virtual IP both list) stay
// apart. Otherwise the update is a new device, named by its primary IP.
func weakUID(tenantID, partition string, ids []Identifier, ips []string, known Known) string {
	for _, id := range ids {
		if uid, ok := known.Device[Key{id.Type, id.Value}]; ok {
			return uid
		}
	}
	if len(ids) == 0 && len(ips) > 0 {
		if uid, ok := known.ByIP[ips[0]]; ok {
			return uid
		}
		if uid, ok := known.ByOtherIP[ips[0]]; ok {
			return uid
		}
		for _, ip := range ips[1:] {
			if uid, ok := known.ByIP[ip]; ok {
				return uid
			}
		}
		return IPUID(tenantID, partition, ips[0])
	}
	if len(ids) > 0 {
		return UID(tenantID, partition, ids[0])
	}
	return ""
}
