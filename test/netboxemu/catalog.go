package netboxemu

import "fmt"

// The fixed objects devices refer to. Ids are index+1.

// named is a NetBox object that has a name and a slug.
type named struct {
	name, slug string
}

var sites = []named{
	{"HQ", "hq"},
	{"DC East", "dc-east"},
	{"DC West", "dc-west"},
	{"Branch London", "branch-london"},
	{"Branch Tokyo", "branch-tokyo"},
	{"Lab", "lab"},
}

var siteWeights = []int{20, 30, 25, 10, 10, 5}

var tenants = []named{
	{"Acme", "acme"},
	{"Globex", "globex"},
	{"Initech", "initech"},
}

var manufacturers = []named{
	{"Cisco", "cisco"},
	{"Juniper", "juniper"},
	{"Arista", "arista"},
	{"Dell", "dell"},
	{"Palo Alto Networks", "palo-alto-networks"},
	{"Aruba", "aruba"},
	{"APC", "apc"},
	{"Axis", "axis"},
}

// deviceType is a model of a manufacturer (index into manufacturers).
type deviceType struct {
	maker int
	model string
	slug  string
}

var deviceTypes = []deviceType{
	{0, "Catalyst 9300-48P", "c9300-48p"},
	{0, "ISR 4331", "isr4331"},
	{1, "EX4300-48T", "ex4300-48t"},
	{1, "MX204", "mx204"},
	{2, "DCS-7050SX3-48YC8", "dcs-7050sx3-48yc8"},
	{3, "PowerEdge R750", "poweredge-r750"},
	{4, "PA-3220", "pa-3220"},
	{5, "AP-515", "ap-515"},
	{6, "AP8941", "ap8941"},
	{7, "P3265-LVE", "p3265-lve"},
}

var platforms = []named{
	{"Cisco IOS XE", "ios-xe"},
	{"Junos", "junos"},
	{"Arista EOS", "eos"},
	{"Ubuntu 24.04", "ubuntu-24-04"},
	{"PAN-OS", "pan-os"},
	{"ArubaOS", "arubaos"},
}

// role is a device role with the device types and platforms it uses.
type role struct {
	named
	prefix    string
	weight    int
	types     []int // indexes into deviceTypes
	platforms []int // indexes into platforms
}

var roles = []role{
	{named{"Server", "server"}, "srv", 30, []int{5}, []int{3}},
	{named{"Access Switch", "access-switch"}, "sw", 25, []int{0, 2}, []int{0, 1}},
	{named{"Core Switch", "core-switch"}, "core", 5, []int{0, 4}, []int{0, 2}},
	{named{"Router", "router"}, "rtr", 5, []int{1, 3}, []int{0, 1}},
	{named{"Firewall", "firewall"}, "fw", 5, []int{6}, []int{4}},
	{named{"Access Point", "access-point"}, "ap", 15, []int{7}, []int{5}},
	{named{"PDU", "pdu"}, "pdu", 10, []int{8}, nil},
	{named{"Camera", "camera"}, "cam", 5, []int{9}, nil},
}

var roleWeights = func() []int {
	w := make([]int, len(roles))
	for i, r := range roles {
		w[i] = r.weight
	}
	return w
}()

// status is a NetBox device status choice.
type status struct {
	value, label string
}

var statuses = []status{
	{"active", "Active"},
	{"offline", "Offline"},
	{"planned", "Planned"},
	{"staged", "Staged"},
	{"failed", "Failed"},
	{"inventory", "Inventory"},
	{"decommissioning", "Decommissioning"},
}

var statusWeights = []int{80, 5, 4, 3, 2, 4, 2}

// tag is a NetBox tag.
type tag struct {
	named
	color string
}

var tags = []tag{
	{named{"Monitored", "monitored"}, "4caf50"},
	{named{"PCI", "pci"}, "f44336"},
	{named{"Critical", "critical"}, "ff9800"},
	{named{"Lab", "lab"}, "9e9e9e"},
	{named{"Legacy", "legacy"}, "795548"},
}

var tagOdds = []int{60, 10, 15, 5, 10} // percent of devices carrying each tag

// Custom field values.
var (
	criticalities = []string{"low", "medium", "high"}
	assetOwners   = []string{"netops", "sysadmin", "facilities", "security"}
)

func slugIndex[T any](list []T, slugOf func(T) string, slug string) int {
	for i, x := range list {
		if slugOf(x) == slug {
			return i
		}
	}
	return -1
}

// Roles with behaviour of their own.
const (
	accessSwitchRole = 1 // may be a virtual chassis member
	routerRole       = 3 // paired for first-hop redundancy
)

// ouis are real IEEE OUIs of the manufacturers, by index: Cisco, Juniper,
// Arista, Dell, Palo Alto Networks, Aruba, APC (American Power
// Conversion), Axis.
var ouis = [][3]byte{
	{0x00, 0x1A, 0xA1},
	{0x00, 0x05, 0x85},
	{0x00, 0x1C, 0x73},
	{0x00, 0x14, 0x22},
	{0x00, 0x1B, 0x17},
	{0x00, 0x0B, 0x86},
	{0x00, 0xC0, 0xB7},
	{0x00, 0x40, 0x8C},
}

// vmwareOUI is VMware's OUI, which virtual machines' MACs carry.
var vmwareOUI = [3]byte{0x00, 0x50, 0x56}

// vmStatusWeights draw VM statuses (indexes into statuses): VMs have no
// "inventory".
var vmStatusWeights = []int{80, 6, 4, 3, 2, 0, 5}

// vmRoles are the roles VMs take (indexes into roles).
var vmRoles = []int{0}

// fhrpMAC is the virtual MAC a router pair shares, by pair number: Cisco
// pairs run HSRP (00:00:0C:07:AC:<group>) or GLBP (00:07:B4:00:01:<group>),
// the others VRRP for IPv4 (00:00:5E:00:01:<vrid>) or IPv6
// (00:00:5E:00:02:<vrid>). Group numbers repeat across sites, as they do in
// real networks.
func fhrpMAC(maker, pair int) string {
	group := byte(pair%255 + 1)
	switch {
	case maker == 0 && pair%2 == 0:
		return fmt.Sprintf("00:00:0C:07:AC:%02X", group)
	case maker == 0:
		return fmt.Sprintf("00:07:B4:00:01:%02X", group)
	case pair%2 == 0:
		return fmt.Sprintf("00:00:5E:00:01:%02X", group)
	default:
		return fmt.Sprintf("00:00:5E:00:02:%02X", group)
	}
}
