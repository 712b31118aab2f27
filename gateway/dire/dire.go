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
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/uuid"
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

// NormalizeMAC returns a MAC in upper case without separators, or "" when s
// is not usable as a device's MAC: wrong length, not hex, all zeros,
// broadcast, multicast, or a well-known virtual MAC (VirtualMAC) that
// first-hop redundancy routers share. So a virtual MAC is never an
// identifier of any source's device, nor a device's MAC.
func NormalizeMAC(s string) string {
	// Called for every MAC of every update: one pass, one allocation.
	var m [12]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' || c == '-' || c == '.' || c == ' ':
			continue
		case c >= '0' && c <= '9', c >= 'A' && c <= 'F':
		case c >= 'a' && c <= 'f':
			c -= 'a' - 'A'
		default:
			return "" // not hex (any non-ASCII byte lands here too)
		}
		if n == len(m) {
			return ""
		}
		m[n] = c
		n++
	}
	if n != len(m) {
		return ""
	}
	out := string(m[:])
	if out == "000000000000" || out == "FFFFFFFFFFFF" || hexValue(m[1])&0x01 != 0 || VirtualMAC(out) {
		return ""
	}
	return out
}

// virtualPrefixes are the well-known virtual MAC ranges, as normalized
// prefixes: every router of a first-hop redundancy group answers with the
// group's MAC, so it tells no device from another (an HSRP pair would
// merge into one device by it).
var virtualPrefixes = []string{
	"00000C07AC",   // HSRP version 1, 00:00:0C:07:AC:<group> (Cisco)
	"00000C9FF",    // HSRP version 2, 00:00:0C:9F:F<group> (Cisco)
	"000573A00",    // HSRP for IPv6, 00:05:73:A0:0<group> (Cisco)
	"00005E0001",   // VRRP for IPv4 (RFC 5798), also CARP and Juniper, Arista, Nokia VRRP
	"00005E0002",   // VRRP for IPv6 (RFC 5798)
	"0007B40",      // GLBP, 00:07:B4:0<group>:<forwarder> (Cisco)
	"002304EEBE",   // vPC peer-gateway virtual MAC, 00:23:04:EE:BE:<domain> (Cisco Nexus)
	"001C73000099", // the VARP virtual router MAC of Arista's documentation
}

// VirtualMAC reports whether a normalized MAC is a well-known virtual MAC
// of first-hop redundancy: HSRP v1, v2 and IPv6, VRRP (IPv4 and IPv6, also
// CARP's), GLBP, Cisco vPC's peer-gateway MAC and the VARP MAC
// 00:1C:73:00:00:99 that Arista's documentation configures. Such a MAC identifies no device.
func VirtualMAC(mac string) bool {
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(mac, p) {
			return true
		}
	}
	return false
}

// hexValue is the value of an upper-case hex digit.
func hexValue(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// LocallyAdministered reports whether a normalized MAC has the locally
// administered bit (the second-least-significant bit of the first octet).
func LocallyAdministered(mac string) bool {
	raw, err := hex.DecodeString(mac)
	return err == nil && len(raw) == 6 && raw[0]&0x02 != 0
}

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
		n := NormalizeMAC(m)
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
		if LocallyAdministered(n) {
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

// node of the union-find: an update (index) or an existing device (uid).
type group struct {
	parent int
	// ints holds the integration ids of the group, by type.
	ints map[string]string
	// devices are the existing devices in the group.
	devices []string
	// strongest identifier of the group, for new uids and the canonical pick.
	strongest *Identifier
}

// Resolve plans a segment. ids[i] are the identifiers of update i
// (Identifiers), ips[i] its addresses, primary IP first (IPs); only an
// update without identifiers is placed by its addresses, so ips[i] of the
// others may be nil.
func Resolve(tenantID, partition string, ids [][]Identifier, ips [][]string, known Known) Plan {
	n := len(ids)
	groups := make([]group, n)
	for i := range groups {
		groups[i] = group{parent: i, ints: map[string]string{}}
	}
	find := func(i int) int {
		for groups[i].parent != i {
			groups[i].parent = groups[groups[i].parent].parent
			i = groups[i].parent
		}
		return i
	}
	// conflicts reports whether two sets of integration ids disagree.
	conflicts := func(a, b map[string]string) bool {
		for t, v := range a {
			if w, ok := b[t]; ok && w != v {
				return true
			}
		}
		return false
	}
	addInts := func(dst map[string]string, ids []Identifier) {
		for _, id := range ids {
			if id.integration() {
				dst[id.Type] = id.Value
			}
		}
	}
	// An existing device's integration ids, as a map.
	deviceInts := func(uid string) map[string]string {
		m := map[string]string{}
		addInts(m, known.Integrations[uid])
		return m
	}
	stronger := func(a *Identifier, b Identifier) bool {
		return a == nil || b.Rank > a.Rank || (b.Rank == a.Rank && (b.Type < a.Type || (b.Type == a.Type && b.Value < a.Value)))
	}
	for i := range ids {
		addInts(groups[i].ints, ids[i])
		for _, id := range ids[i] {
			if id.Rank > RankWeak && stronger(groups[i].strongest, id) {
				idc := id
				groups[i].strongest = &idc
			}
		}
	}
	var union func(i, j int) bool
	// owner is the update whose group holds an existing device.
	owner := map[string]int{}
	// attach puts an existing device into update i's group unless their
	// integration ids tell them apart. A device another group of the
	// segment holds joins the two groups, or stays with the other one when
	// their integration ids differ (one device never takes two ids of one
	// integration).
	attach := func(i int, uid string) bool {
		r := find(i)
		if o, ok := owner[uid]; ok {
			return find(o) == r || union(o, i)
		}
		if slices.Contains(groups[r].devices, uid) {
			return true
		}
		di := deviceInts(uid)
		if conflicts(groups[r].ints, di) {
			return false
		}
		for _, d := range groups[r].devices {
			if conflicts(di, deviceInts(d)) {
				return false
			}
		}
		groups[r].devices = append(groups[r].devices, uid)
		owner[uid] = r
		for t, v := range di {
			groups[r].ints[t] = v
		}
		return true
	}
	union = func(i, j int) bool {
		a, b := find(i), find(j)
		if a == b {
			return true
		}
		if conflicts(groups[a].ints, groups[b].ints) {
			return false
		}
		for _, d := range groups[b].devices {
			for _, e := range groups[a].devices {
				if conflicts(deviceInts(d), deviceInts(e)) {
					return false
				}
			}
		}
		groups[b].parent = a
		for t, v := range groups[b].ints {
			groups[a].ints[t] = v
		}
		groups[a].devices = append(groups[a].devices, groups[b].devices...)
		if groups[b].strongest != nil && stronger(groups[a].strongest, *groups[b].strongest) {
			groups[a].strongest = groups[b].strongest
		}
		return true
	}

	// Strongest identifiers first, across the whole segment: updates that
	// share one are one device, and so is the device that already holds it.
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
			union(j, o.i)
		} else {
			first[k] = o.i
		}
		if uid, ok := known.Device[k]; ok {
			if attach(o.i, uid) {
				if _, seen := mergedBy[uid]; !seen {
					mergedBy[uid] = o.id
				}
			}
		}
	}

	plan := Plan{UIDs: make([]string, n)}
	canonical := map[int]string{}
	for i := range ids {
		r := find(i)
		if uid, ok := canonical[r]; ok {
			plan.UIDs[i] = uid
			continue
		}
		g := &groups[r]
		var uid string
		switch {
		case len(g.devices) > 0:
			// The device holding the strongest identifier stays; the others merge into it.
			uid = pickCanonical(g.devices, known)
			for _, d := range g.devices {
				if d != uid {
					plan.Merges = append(plan.Merges, Merge{From: d, Into: uid, By: mergedBy[d]})
				}
			}
		case g.strongest != nil:
			uid = UID(tenantID, partition, *g.strongest)
		default:
			uid = weakUID(tenantID, partition, ids[i], ips[i], known)
		}
		canonical[r] = uid
		plan.UIDs[i] = uid
	}
	for i := range ids {
		for _, id := range ids[i] {
			plan.Claims = append(plan.Claims, Claim{Identifier: id, UID: plan.UIDs[i]})
		}
	}
	return plan
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
