package netboxemu

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// NetBox timestamps: ISO 8601 with microseconds, UTC as "Z".
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Spans over which device times are spread.
const (
	createdSpan = int64(3 * 365 * 24 * time.Hour / time.Microsecond)
)

// inventory generates devices, virtual machines, interfaces, MACs and IP
// addresses on demand.
type inventory struct {
	seed    uint64
	n       int
	ifs     int // interfaces per device
	vms     int // virtual machines
	epoch   time.Time
	overlap population.Overlap
	macs    macPlan
	mut     *mutations
}

// attrs are the drawn attributes of one device: everything filters look at
// and everything rendering needs beyond the ordinal.
type attrs struct {
	ord                         int
	site, role, status, devType int
	tenant, platform, owner     int // -1: null
	tags                        uint8
	hasIP4, hasIP6, dnsName     bool
	prefixLen                   int
	named, assetTag             bool
	serial                      uint64 // 0: empty
	created, updated            time.Time
	criticality                 int
	monitored                   bool
	// Drawn after the fields above, so that adding them changed none of
	// those: an IPv4 address on eth0 without being primary, a second
	// address on the last interface (a loopback), virtual chassis
	// membership, and an FHRP pair (two routers sharing a virtual MAC).
	ifaceIP4, loopIP bool
	vc, vcPosition   int // vc: -1 none, else the chassis index
	pair             bool
	vm               bool // a virtual machine's attributes
	shared           *population.SharedDevice
	renamed          *string
	deleted          bool
}

// attrs are the attributes of device ordinal i as served now: drawn, made
// an FHRP partner or a virtual chassis member, with the tests' renames and
// deletions applied.
func (inv *inventory) attrs(i int) attrs {
	a := inv.drawn(i)
	// A router at an even ordinal pairs with the next device, which becomes
	// the second router of the pair: same site, model and platform.
	switch {
	case i%2 == 1:
		if p := inv.drawn(i - 1); p.role == routerRole {
			a.role, a.site, a.devType, a.platform, a.pair = routerRole, p.site, p.devType, p.platform, true
		}
	case a.role == routerRole && i+1 < inv.n:
		a.pair = true
	}
	if a.role == accessSwitchRole && a.vc >= 0 {
		// Stacks of four ordinals; members after the first are unnamed, as
		// NetBox users commonly leave them.
		a.vc, a.vcPosition = i/4, i%4+1
		if a.vcPosition > 1 {
			a.named = false
		}
	} else {
		a.vc = -1
	}
	if inv.overlap.Shared(i) {
		sh := inv.overlap.Device(i)
		a.shared, a.hasIP4, a.hasIP6, a.named = &sh, true, true, true
	}
	a.ifaceIP4 = a.ifaceIP4 || a.hasIP4
	if inv.mut != nil {
		inv.mut.apply(&a)
	}
	return a
}

// drawn are the attributes of device ordinal i as its generator draws them.
func (inv *inventory) drawn(i int) attrs {
	r := rand.New(rand.NewPCG(inv.seed, uint64(i)))
	a := attrs{ord: i, tenant: -1, platform: -1, owner: -1}
	a.site = ordinals.Pick(r, siteWeights)
	a.role = ordinals.Pick(r, roleWeights)
	a.status = ordinals.Pick(r, statusWeights)
	if r.IntN(100) >= 30 {
		a.tenant = r.IntN(len(tenants))
	}
	for t, odds := range tagOdds {
		if r.IntN(100) < odds {
			a.tags |= 1 << t
		}
	}
	a.hasIP4 = r.IntN(100) < 90
	a.hasIP6 = r.IntN(100) < 30
	a.dnsName = r.IntN(2) == 0
	a.prefixLen = []int{24, 24, 22, 16}[r.IntN(4)]
	a.named = r.IntN(100) >= 3
	a.assetTag = r.IntN(100) >= 40
	if r.IntN(100) >= 30 {
		a.serial = 1 + r.Uint64N(1<<40)
	}
	ro := roles[a.role]
	a.devType = ro.types[r.IntN(len(ro.types))]
	if len(ro.platforms) > 0 && r.IntN(100) >= 10 {
		a.platform = ro.platforms[r.IntN(len(ro.platforms))]
	}
	a.created = inv.epoch.Add(-time.Duration(r.Int64N(createdSpan)) * time.Microsecond)
	a.updated = a.created.Add(time.Duration(r.Int64N(inv.epoch.Sub(a.created).Microseconds()+1)) * time.Microsecond)
	a.criticality = r.IntN(len(criticalities))
	a.monitored = r.IntN(100) < 70
	if r.IntN(100) >= 20 {
		a.owner = r.IntN(len(assetOwners))
	}
	a.ifaceIP4 = r.IntN(100) < 70 // of those without a primary IPv4
	a.loopIP = r.IntN(100) < 20
	a.vc = -1
	if r.IntN(100) < 30 {
		a.vc = 0 // a stack member, when an access switch
	}
	return a
}

// name is the device name, unique through its id (a test's rename wins).
func (a *attrs) name() (string, bool) {
	if a.renamed != nil {
		return *a.renamed, true
	}
	if a.shared != nil {
		return a.shared.Hostname, true
	}
	if !a.named {
		return "", false
	}
	if a.vm {
		return fmt.Sprintf("%s-vm-%06d", sites[a.site].slug, a.ord+1), true
	}
	return fmt.Sprintf("%s-%s-%06d", sites[a.site].slug, roles[a.role].prefix, a.ord+1), true
}

// vcName is the name of the virtual chassis of a member.
func (a *attrs) vcName() string {
	return fmt.Sprintf("stack-%06d", a.vc+1)
}

func (a *attrs) serialString() string {
	if a.serial == 0 {
		return ""
	}
	return fmt.Sprintf("SN%010X", a.serial)
}

func (a *attrs) assetTagString() (string, bool) {
	return fmt.Sprintf("AT-%07d", a.ord+1), a.assetTag
}

// display is how NetBox shows a device (Device.__str__): its name, else
// "<chassis>:<position>" for a virtual chassis member, else its type and id.
func (a *attrs) display() string {
	if n, ok := a.name(); ok {
		return n
	}
	if a.vc >= 0 {
		return fmt.Sprintf("%s:%d", a.vcName(), a.vcPosition)
	}
	dt := deviceTypes[a.devType]
	return fmt.Sprintf("%s %s (%d)", manufacturers[dt.maker].name, dt.model, a.ord+1)
}

// Address plan: a function of the ordinal, so unique without bookkeeping.
func ip4(i int) netip.Addr {
	v := uint32(10<<24) + uint32(i) + 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func ip6(i int) netip.Addr {
	b := [16]byte{0x20, 0x01, 0x0d, 0xb8}
	binary.BigEndian.PutUint64(b[8:], uint64(i)+1)
	return netip.AddrFrom16(b)
}

// urls builds absolute URLs under base (scheme://host).
type urls string

func (u urls) api(path string, id int) string {
	return string(u) + "/api/" + path + "/" + strconv.Itoa(id) + "/"
}

func (u urls) ui(path string, id int) string {
	return string(u) + "/" + path + "/" + strconv.Itoa(id) + "/"
}

func (u urls) ref(path string, id int, n named) Ref {
	return Ref{ID: id, URL: u.api(path, id), Display: n.name, Name: n.name, Slug: n.slug}
}

// refTable holds the nested catalog objects as rendered under one base URL,
// so that a page does not rebuild them for every device.
type refTable struct {
	u                                urls
	sites, roles, tenants, platforms []Ref
	deviceTypes                      []DeviceTypeRef
	tags                             []TagRef
}

func newRefTable(u urls) *refTable {
	t := &refTable{u: u}
	for i, x := range sites {
		t.sites = append(t.sites, u.ref("dcim/sites", i+1, x))
	}
	for i, x := range roles {
		t.roles = append(t.roles, u.ref("dcim/device-roles", i+1, x.named))
	}
	for i, x := range tenants {
		t.tenants = append(t.tenants, u.ref("tenancy/tenants", i+1, x))
	}
	for i, x := range platforms {
		t.platforms = append(t.platforms, u.ref("dcim/platforms", i+1, x))
	}
	for i, dt := range deviceTypes {
		t.deviceTypes = append(t.deviceTypes, DeviceTypeRef{
			ID: i + 1, URL: u.api("dcim/device-types", i+1), Display: dt.model,
			Manufacturer: u.ref("dcim/manufacturers", dt.maker+1, manufacturers[dt.maker]),
			Model:        dt.model, Slug: dt.slug,
		})
	}
	for i, tg := range tags {
		t.tags = append(t.tags, TagRef{ID: i + 1, URL: u.api("extras/tags", i+1),
			Display: tg.name, Name: tg.name, Slug: tg.slug, Color: tg.color})
	}
	return t
}

// refCache keeps the refTables of the few base URLs a server is reached by.
type refCache struct {
	mu     sync.Mutex
	tables map[urls]*refTable
}

// maxRefTables bounds the cache against clients sending arbitrary Hosts.
const maxRefTables = 16

func (c *refCache) get(u urls) *refTable {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tables[u]; ok {
		return t
	}
	t := newRefTable(u)
	if c.tables == nil {
		c.tables = map[urls]*refTable{}
	}
	if len(c.tables) < maxRefTables {
		c.tables[u] = t
	}
	return t
}

// IP address slots of a device (ids 3*ordinal+1+slot) and of a virtual
// machine (ids 3*N+2*ordinal+1+slot).
const (
	slotIP4  = 0 // IPv4 on eth0, primary_ip4 when hasIP4
	slotIP6  = 1 // IPv6 on eth0, primary_ip6 when hasIP6
	slotLoop = 2 // IPv4 on the last interface (a loopback), never primary
)

// ipSlots is how many address slots each device has.
const ipSlots = 3

// maxLoopbacks bounds the devices with a loopback address: 100.64.0.0/10.
const maxLoopbacks = 1<<22 - 2

// ipExists says whether a device has the address of slot.
func (a *attrs) ipExists(slot int) bool {
	switch slot {
	case slotIP4:
		return a.ifaceIP4
	case slotIP6:
		return a.hasIP6
	default:
		return !a.vm && a.loopIP && a.ord < maxLoopbacks
	}
}

// address is the address of a slot with its prefix length.
func (inv *inventory) address(a *attrs, slot int) netip.Prefix {
	if a.vm {
		if slot == slotIP6 {
			b := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1}
			binary.BigEndian.PutUint64(b[8:], uint64(a.ord)+1)
			return netip.PrefixFrom(netip.AddrFrom16(b), 64)
		}
		v := uint32(172<<24|16<<16) + uint32(a.ord) + 1
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 24)
	}
	if sh := a.shared; sh != nil && slot == slotIP4 {
		return netip.PrefixFrom(sh.IPv4, 24)
	}
	if sh := a.shared; sh != nil && slot == slotIP6 {
		return netip.PrefixFrom(sh.IPv6, 64)
	}
	switch slot {
	case slotIP4:
		return netip.PrefixFrom(ip4(a.ord), a.prefixLen)
	case slotIP6:
		return netip.PrefixFrom(ip6(a.ord), 64)
	}
	v := uint32(100<<24|64<<16) + uint32(a.ord) + 1
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
}

// ipID is the id of a slot's IP address object.
func (inv *inventory) ipID(a *attrs, slot int) int {
	if a.vm {
		return ipSlots*inv.n + 2*a.ord + 1 + slot
	}
	return ipSlots*a.ord + 1 + slot
}

func (inv *inventory) ipRef(u urls, a *attrs, slot int) *IPRef {
	p := inv.address(a, slot)
	ref := &IPRef{ID: inv.ipID(a, slot), Family: Family{4, "IPv4"}, Address: p.String()}
	if p.Addr().Is6() {
		ref.Family = Family{6, "IPv6"}
	}
	ref.URL = u.api("ipam/ip-addresses", ref.ID)
	ref.Display = ref.Address
	if n, ok := a.name(); ok && a.dnsName && slot != slotLoop {
		ref.DNSName = n + ".example.net"
	}
	return ref
}

// device renders the device of a with the nested objects of refs.
func (inv *inventory) device(a *attrs, refs *refTable) Device {
	u := refs.u
	d := Device{
		ID:            a.ord + 1,
		URL:           u.api("dcim/devices", a.ord+1),
		DisplayURL:    u.ui("dcim/devices", a.ord+1),
		Display:       a.display(),
		DeviceType:    refs.deviceTypes[a.devType],
		Role:          refs.roles[a.role],
		Serial:        a.serialString(),
		Site:          refs.sites[a.site],
		Status:        Choice{statuses[a.status].value, statuses[a.status].label},
		ConfigContext: configContexts[a.site],
		Tags:          []TagRef{},
		CustomFields: DeviceCustomFields{
			Criticality: criticalities[a.criticality],
			Monitored:   a.monitored,
		},
		Created:        a.created.Format(timeLayout),
		LastUpdated:    a.updated.Format(timeLayout),
		InterfaceCount: inv.ifs,
	}
	if n, ok := a.name(); ok {
		d.Name = &n
	}
	if a.tenant >= 0 {
		d.Tenant = &refs.tenants[a.tenant]
	}
	if a.platform >= 0 {
		d.Platform = &refs.platforms[a.platform]
	}
	if t, ok := a.assetTagString(); ok {
		d.AssetTag = &t
	}
	if a.hasIP4 {
		d.PrimaryIP4 = inv.ipRef(u, a, slotIP4)
		d.PrimaryIP = d.PrimaryIP4
	}
	if a.hasIP6 {
		d.PrimaryIP6 = inv.ipRef(u, a, slotIP6)
		d.PrimaryIP = d.PrimaryIP6
	}
	if a.vc >= 0 {
		d.VirtualChassis = &VirtualChassisRef{ID: a.vc + 1, URL: u.api("dcim/virtual-chassis", a.vc+1),
			Display: a.vcName(), Name: a.vcName()}
		d.VCPosition = ptr(a.vcPosition)
	}
	for t := range tags {
		if a.tags&(1<<t) != 0 {
			d.Tags = append(d.Tags, refs.tags[t])
		}
	}
	if a.owner >= 0 {
		d.CustomFields.AssetOwner = &assetOwners[a.owner]
	}
	return d
}

// configContexts is the config context of each site, the heaviest field of
// a device as in real NetBox; rendered once.
var configContexts = func() []json.RawMessage {
	out := make([]json.RawMessage, len(sites))
	for i, site := range sites {
		raw, err := json.Marshal(map[string]any{
			"ntp_servers":   []string{"10.255.0.1", "10.255.0.2"},
			"syslog_server": "10.255.0.10",
			"snmp":          map[string]any{"community": "public", "location": site.name},
		})
		if err != nil {
			panic(fmt.Sprintf("netboxemu: encoding config context: %v", err))
		}
		out[i] = raw
	}
	return out
}()

func (u urls) deviceRef(a *attrs) DeviceRef {
	ref := DeviceRef{ID: a.ord + 1, URL: u.api("dcim/devices", a.ord+1), Display: a.display()}
	if n, ok := a.name(); ok {
		ref.Name = &n
	}
	return ref
}

// Device returns the device with the given id as the list would render it
// for a request to base (scheme://host), and false when there is none (or
// it was deleted).
func (s *Server) Device(id int, base string) (Device, bool) {
	if id < 1 || id > s.inv.n {
		return Device{}, false
	}
	a := s.inv.attrs(id - 1)
	if a.deleted {
		return Device{}, false
	}
	return s.inv.device(&a, s.refs.get(urls(strings.TrimSuffix(base, "/")))), true
}

func ptr[T any](v T) *T { return &v }
