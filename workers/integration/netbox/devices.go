package netbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// Only the fields the client maps are decoded, so a page costs little more
// than the updates made from it.

// nbRef is a nested object with a name and a slug (site, role,
// manufacturer, tenant, platform, tag).
type nbRef struct {
	Name string `json:"name"`
	Slug string `json:"slug"`
}

// nbIP is a nested IP address such as primary_ip4.
type nbIP struct {
	Address string `json:"address"`
}

// nbObject is a device of /api/dcim/devices/ or a virtual machine of
// /api/virtualization/virtual-machines/: the fields they share, and the
// device's own (device_type, virtual_chassis, vc_position).
type nbObject struct {
	ID     int64   `json:"id"`
	Name   *string `json:"name"`
	Status *struct {
		Value string `json:"value"`
	} `json:"status"`
	Site       *nbRef  `json:"site"`
	Role       *nbRef  `json:"role"`
	Tenant     *nbRef  `json:"tenant"`
	Platform   *nbRef  `json:"platform"`
	Serial     string  `json:"serial"`
	Tags       []nbRef `json:"tags"`
	DeviceType *struct {
		Manufacturer *nbRef `json:"manufacturer"`
		Model        string `json:"model"`
	} `json:"device_type"`
	VirtualChassis *nbRef  `json:"virtual_chassis"`
	VCPosition     *int    `json:"vc_position"`
	PrimaryIP4     *nbIP   `json:"primary_ip4"`
	PrimaryIP6     *nbIP   `json:"primary_ip6"`
	LastUpdated    *string `json:"last_updated"`
}

func (d *nbObject) valid() error { return validID("device or virtual machine", d.ID) }

// nbOwnerRef is a nested device or virtual machine.
type nbOwnerRef struct {
	ID int64 `json:"id"`
}

// nbMACRef is a nested MAC address object (NetBox 4.2+).
type nbMACRef struct {
	MACAddress string `json:"mac_address"`
}

// nbInterface is an interface of /api/dcim/interfaces/ or
// /api/virtualization/interfaces/. Before 4.2 mac_address is its only MAC;
// from 4.2 primary_mac_address is the one the interface uses (and
// mac_address repeats it), while mac_addresses lists every MAC assigned to
// it, ordered by address, which puts shared virtual MACs such as HSRP's
// first.
type nbInterface struct {
	ID                int64       `json:"id"`
	Device            *nbOwnerRef `json:"device"`
	VirtualMachine    *nbOwnerRef `json:"virtual_machine"`
	MACAddress        *string     `json:"mac_address"`
	PrimaryMACAddress *nbMACRef   `json:"primary_mac_address"`
	MACAddresses      []nbMACRef  `json:"mac_addresses"`
}

func (i *nbInterface) valid() error { return validID("interface", i.ID) }

// nbIPAddress is an IP address of /api/ipam/ip-addresses/.
type nbIPAddress struct {
	ID             int64  `json:"id"`
	Address        string `json:"address"`
	AssignedObject *struct {
		Device         *nbOwnerRef `json:"device"`
		VirtualMachine *nbOwnerRef `json:"virtual_machine"`
	} `json:"assigned_object"`
}

func (a *nbIPAddress) valid() error { return validID("IP address", a.ID) }

func validID(what string, id int64) error {
	if id <= 0 {
		return errors.New(what + " without a valid id")
	}
	return nil
}

// owned are the MACs and IPs found for one device or VM.
type owned struct {
	primaryMACs, otherMACs []string // upper case, as NetBox writes them
	ips                    []string // interface addresses, as NetBox lists them
}

// lookupBatchSize is how many owner ids one interface or IP lookup names:
// 200 ids keep the request line well under the 8 KiB proxies commonly
// accept.
const lookupBatchSize = 200

// vanishedID finds the ids of a NetBox 400 that refuses a model choice
// ("Select a valid choice. 42 is not one of the available choices."): an
// object deleted since its list page was read.
var vanishedID = regexp.MustCompile(`Select a valid choice\. (\d+) is not one of the available choices`)

// lookup returns the MACs and IP addresses of the objects of a page, by
// id. An id the interface list refuses as unknown is an object deleted
// since the page was read: it is left out of the answer (its absence tells
// the caller) and the lookup asked again without it.
func (r *run) lookup(ctx context.Context, k *kind, objs []nbObject) (map[int64]*owned, error) {
	out := make(map[int64]*owned, len(objs))
	for i := range objs {
		out[objs[i].ID] = &owned{}
	}
	for start := 0; start < len(objs); start += lookupBatchSize {
		var ids []int64
		for i := range objs[start:min(start+lookupBatchSize, len(objs))] {
			ids = append(ids, objs[start+i].ID)
		}
		for len(ids) > 0 {
			gone, err := r.interfaces(ctx, k, ids, out)
			if err == nil {
				break
			}
			if len(gone) == 0 {
				return nil, fmt.Errorf("interfaces: %w", err)
			}
			for _, id := range gone {
				delete(out, id)
			}
			ids = slices.DeleteFunc(ids, func(id int64) bool { return slices.Contains(gone, id) })
			for _, id := range ids {
				*out[id] = owned{} // asked again from the start
			}
		}
		if len(ids) == 0 {
			continue
		}
		if err := r.addresses(ctx, k, ids, out); err != nil {
			return nil, fmt.Errorf("IP addresses: %w", err)
		}
	}
	return out, nil
}

// ownerQuery names ids in k's owner filter, with the largest page.
func ownerQuery(k *kind, ids []int64, fields string) url.Values {
	q := make(url.Values, 3)
	for _, id := range ids {
		q.Add(k.ownerParam, strconv.FormatInt(id, 10))
	}
	q.Set("limit", strconv.Itoa(int(pageLimits.Max)))
	q.Set("fields", fields)
	return q
}

// interfaces collects the MACs of the interfaces of ids into out. When
// NetBox refuses ids as unknown, it returns them with the error.
func (r *run) interfaces(ctx context.Context, k *kind, ids []int64, out map[int64]*owned) ([]int64, error) {
	q := ownerQuery(k, ids, k.interfaceFields)
	err := collect(ctx, r.c, k.interfacePath, q, func(it *nbInterface) {
		o := out[k.owner(it.Device, it.VirtualMachine)]
		if o == nil {
			return
		}
		primary := ""
		switch {
		case it.PrimaryMACAddress != nil:
			primary = it.PrimaryMACAddress.MACAddress
		case it.MACAddress != nil:
			primary = *it.MACAddress // before 4.2, or a 4.2+ answer trimmed of primary_mac_address
		}
		if m := macText(primary); m != "" {
			o.primaryMACs = appendNew(o.primaryMACs, m)
		}
		for _, m := range it.MACAddresses {
			if m := macText(m.MACAddress); m != "" && !slices.Contains(o.primaryMACs, m) {
				o.otherMACs = appendNew(o.otherMACs, m)
			}
		}
	})
	var re *requestError
	if err == nil || !errors.As(err, &re) || re.status != http.StatusBadRequest {
		return nil, err
	}
	var gone []int64
	for _, m := range vanishedID.FindAllStringSubmatch(re.body, -1) {
		if id, perr := strconv.ParseInt(m[1], 10, 64); perr == nil && slices.Contains(ids, id) {
			gone = append(gone, id)
		}
	}
	return gone, err
}

// addresses collects the IP addresses assigned to the interfaces of ids
// into out. NetBox's IP address filters ignore unknown ids.
func (r *run) addresses(ctx context.Context, k *kind, ids []int64, out map[int64]*owned) error {
	return collect(ctx, r.c, ipAddressesPath, ownerQuery(k, ids, ipFields), func(a *nbIPAddress) {
		if a.AssignedObject == nil {
			return
		}
		o := out[k.owner(a.AssignedObject.Device, a.AssignedObject.VirtualMachine)]
		if addr, ok := hostAddress(a.Address); ok && o != nil && !slices.Contains(o.ips, addr) {
			o.ips = append(o.ips, addr)
		}
	})
}

// collect pages through the list at path with the query q, handing every
// item to add.
func collect[T any, P item[T]](ctx context.Context, c *Client, path string, q url.Values, add func(P)) error {
	target := c.base.String() + path + "?" + q.Encode()
	for page := 1; target != ""; page++ {
		p, err := getPage[T, P](ctx, c, target, int(pageLimits.Max))
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		for i := range p.results {
			add(&p.results[i])
		}
		if len(p.results) == 0 && p.next != nil && *p.next != "" {
			return fmt.Errorf("page %d: an empty page links to a next page", page)
		}
		if target, err = c.follow(path, target, p.next); err != nil {
			return fmt.Errorf("after page %d: %w", page, err)
		}
	}
	return nil
}

// macText is a MAC as NetBox writes it (upper case), or "" when empty.
func macText(mac string) string { return strings.ToUpper(strings.TrimSpace(mac)) }

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// update maps a NetBox device or VM to a device update, and reports false
// for one whose status says to retract it (not report it).
func (r *run) update(k *kind, d *nbObject, found *owned, label string) (results.DeviceUpdate, bool) {
	c := r.c
	status := ""
	if d.Status != nil {
		status = d.Status.Value
	}
	avail := c.availability(status)
	if avail == AvailabilityRetract {
		return results.DeviceUpdate{}, false
	}
	meta := map[string]string{
		k.idKey:                              strconv.FormatInt(d.ID, 10),
		integration.MetaIntegrationType:      IntegrationType,
		integration.MetaIntegrationSourceUID: c.sourceUID,
	}
	u := results.DeviceUpdate{
		Source:    IntegrationType,
		Partition: c.partition,
		Timestamp: r.seen,
		Metadata:  meta,
	}
	switch avail {
	case AvailabilityAvailable:
		u.IsAvailable = ptr(true)
	case AvailabilityUnavailable:
		u.IsAvailable = ptr(false)
	}
	if label != "" {
		meta[integration.MetaQueryLabel] = label
	}
	ips := allIPs(d, found)
	if len(ips) > 0 {
		u.IP = ips[0]
		u.DeviceID = c.partition + ":" + u.IP // upstream's form; the gateway does not identify by it
		meta[integration.MetaAllIPs] = strings.Join(ips, ",")
	}
	if found != nil {
		macs := append(slices.Clone(found.primaryMACs), found.otherMACs...)
		if len(macs) > 0 {
			u.MAC = deviceMAC(found)
			meta[integration.MetaAllMACs] = strings.Join(macs, ",")
		}
	}
	if d.Name != nil && strings.TrimSpace(*d.Name) != "" {
		u.Hostname = strings.TrimSpace(*d.Name)
		meta["name"] = u.Hostname
	} else if d.VirtualChassis != nil && d.VirtualChassis.Name != "" && d.VCPosition != nil {
		// An unnamed member of a virtual chassis, labelled as NetBox shows it.
		u.Hostname = d.VirtualChassis.Name + ":" + strconv.Itoa(*d.VCPosition)
	}
	if d.VirtualChassis != nil && d.VirtualChassis.Name != "" {
		meta["virtual_chassis"] = d.VirtualChassis.Name
		if d.VCPosition != nil {
			meta["vc_position"] = strconv.Itoa(*d.VCPosition)
		}
	}
	set := func(key, value string) {
		if value = strings.TrimSpace(value); value != "" {
			meta[key] = value
		}
	}
	set("status", status)
	if d.Site != nil {
		set("site", d.Site.Slug)
	}
	if d.Role != nil {
		set("role", d.Role.Slug)
	}
	if d.Tenant != nil {
		set("tenant", d.Tenant.Slug)
	}
	if d.Platform != nil {
		set("os", d.Platform.Name)
		set("platform", d.Platform.Slug)
	}
	set("serial", d.Serial)
	var tags []string
	for _, t := range d.Tags {
		if t.Slug != "" {
			tags = append(tags, t.Slug)
		}
	}
	set("tags", strings.Join(tags, ","))
	if dt := d.DeviceType; dt != nil {
		if dt.Manufacturer != nil {
			set("vendor", dt.Manufacturer.Name)
		}
		set("model", dt.Model)
	}
	if d.LastUpdated != nil {
		set("last_updated", *d.LastUpdated)
	}
	return u, true
}

func ptr[T any](v T) *T { return &v }

// allIPs are the object's addresses: its primary IPv4 and IPv6 first, then
// every other address assigned to its interfaces, IPv4 before IPv6.
func allIPs(d *nbObject, found *owned) []string {
	var out []string
	for _, ip := range []*nbIP{d.PrimaryIP4, d.PrimaryIP6} {
		if ip == nil {
			continue
		}
		if addr, ok := hostAddress(ip.Address); ok && !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	if found == nil {
		return out
	}
	primaries := len(out)
	for _, addr := range found.ips {
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	rest := out[primaries:]
	slices.SortStableFunc(rest, func(a, b string) int {
		return boolInt(strings.Contains(a, ":")) - boolInt(strings.Contains(b, ":"))
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// deviceMAC is the MAC that identifies the object: the first primary MAC
// of its interfaces that is not a well-known virtual MAC (HSRP, VRRP,
// GLBP: shared by a router pair, it identifies neither), else the first
// other such MAC. NetBox 4.2+ orders an interface's MACs by address, so a
// shared virtual MAC would otherwise often come first.
func deviceMAC(found *owned) string {
	for _, list := range [][]string{found.primaryMACs, found.otherMACs} {
		for _, m := range list {
			if n := results.NormalizeMAC(m); n != "" {
				return m
			}
		}
	}
	return ""
}

// hostAddress is the address of a NetBox IP ("10.0.0.1/24" gives
// "10.0.0.1").
func hostAddress(raw string) (string, bool) {
	raw = strings.TrimSpace(raw)
	if p, err := netip.ParsePrefix(raw); err == nil {
		return p.Addr().String(), true
	}
	if a, err := netip.ParseAddr(raw); err == nil {
		return a.String(), true
	}
	return "", false
}

// idSet records the ids a run has emitted: a bitmap in chunks of 65,536
// ids, so 100,000 dense ids take 16 KiB and sparse ids stay cheap.
type idSet struct {
	chunks map[int64]*[1024]uint64
}

// add records id and reports whether it was new.
func (s *idSet) add(id int64) bool {
	if s.chunks == nil {
		s.chunks = map[int64]*[1024]uint64{}
	}
	key, bit := id>>16, id&0xffff
	chunk := s.chunks[key]
	if chunk == nil {
		chunk = new([1024]uint64)
		s.chunks[key] = chunk
	}
	word, mask := bit>>6, uint64(1)<<(bit&63)
	if chunk[word]&mask != 0 {
		return false
	}
	chunk[word] |= mask
	return true
}
