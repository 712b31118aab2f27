package armisemu

import (
	"slices"

	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// The fixed vocabularies devices are drawn from. Weights are relative.

// armisType is how Armis names a population.Kind: its type, category, the
// prefix of generated names, models by vendor (with a default) and the
// operating systems such devices run.
type armisType struct {
	typ, category, prefix string
	models                map[string][]string
	oses                  []osInfo
}

type osInfo struct {
	name     string
	versions []string
}

var (
	windows = osInfo{"Windows", []string{"10", "11"}}
	macOS   = osInfo{"macOS", []string{"14.5", "15.1"}}
	ubuntu  = osInfo{"Ubuntu", []string{"22.04", "24.04"}}
	rhel    = osInfo{"Red Hat Enterprise Linux", []string{"8.9", "9.4"}}
	winSrv  = osInfo{"Windows Server", []string{"2019", "2022"}}
	esxi    = osInfo{"VMware ESXi", []string{"8.0"}}
	linux   = osInfo{"Linux", []string{"4.14", "5.10"}}
	iosXE   = osInfo{"Cisco IOS XE", []string{"17.9.4", "17.12.2"}}
	junos   = osInfo{"Junos OS", []string{"22.4R3", "23.2R1"}}
	eos     = osInfo{"Arista EOS", []string{"4.30.2F"}}
	panOS   = osInfo{"PAN-OS", []string{"11.1.2"}}
	fortiOS = osInfo{"FortiOS", []string{"7.4.3"}}
	iOS     = osInfo{"iOS", []string{"17.5", "18.1"}}
	android = osInfo{"Android", []string{"13", "14"}}
	rtos    = osInfo{"VxWorks", []string{"6.9", "7.0"}}
)

// armisTypes maps every kind of the population to Armis's vocabulary.
var armisTypes = map[population.Kind]armisType{
	population.KindLaptop: {"Laptops", "Computers", "laptop", map[string][]string{
		"Dell": {"Latitude 7440", "Latitude 5540"}, "Lenovo": {"ThinkPad T14", "ThinkPad X1 Carbon"},
		"Apple": {"MacBook Pro 14", "MacBook Air 13"}, "HP": {"EliteBook 840 G10"}, "": {"Notebook"},
	}, []osInfo{windows, macOS, ubuntu}},
	population.KindWorkstation: {"Desktops", "Computers", "desktop", map[string][]string{
		"Dell": {"OptiPlex 7010"}, "HP": {"EliteDesk 800 G9"}, "Apple": {"Mac mini"}, "Lenovo": {"ThinkCentre M90q"}, "": {"Desktop"},
	}, []osInfo{windows, ubuntu}},
	population.KindServer: {"Servers", "Computers", "srv", map[string][]string{
		"Dell": {"PowerEdge R750", "PowerEdge R650"}, "HPE": {"ProLiant DL380 Gen11"}, "Supermicro": {"SuperServer 1029P"},
		"Lenovo": {"ThinkSystem SR650"}, "": {"Server"},
	}, []osInfo{rhel, winSrv, esxi}},
	population.KindVM: {"Virtual Machines", "Computers", "vm", map[string][]string{
		"VMware": {"Virtual Platform"}, "Microsoft": {"Virtual Machine"}, "": {"Virtual Machine"},
	}, []osInfo{rhel, winSrv, ubuntu}},
	population.KindSwitch: {"Switches", "Network Equipment", "sw", map[string][]string{
		"Cisco": {"Catalyst 9300", "Catalyst 9200"}, "Arista": {"7050X3"}, "Juniper": {"EX4300"}, "Aruba": {"CX 6300"},
		"HPE": {"FlexFabric 5945"}, "Ubiquiti": {"UniFi Switch 24"}, "": {"Switch"},
	}, []osInfo{iosXE, eos, junos}},
	population.KindRouter: {"Routers", "Network Equipment", "rtr", map[string][]string{
		"Cisco": {"ISR 4331", "ASR 1001-X"}, "Juniper": {"MX204"}, "Arista": {"7280R3"}, "": {"Router"},
	}, []osInfo{iosXE, junos}},
	population.KindFirewall: {"Firewalls", "Network Equipment", "fw", map[string][]string{
		"Palo Alto Networks": {"PA-3220"}, "Fortinet": {"FortiGate 100F"}, "Cisco": {"Firepower 2110"}, "Juniper": {"SRX345"}, "": {"Firewall"},
	}, []osInfo{panOS, fortiOS, junos}},
	population.KindAccessPoint: {"Access Points", "Network Equipment", "ap", map[string][]string{
		"Aruba": {"AP-515"}, "Cisco": {"Catalyst 9120AX"}, "Ubiquiti": {"UniFi U6 Pro"}, "": {"Access Point"},
	}, []osInfo{linux}},
	population.KindCamera: {"IP Cameras", "Imaging", "cam", map[string][]string{
		"Axis": {"P3265-LVE", "M3106-L"}, "Hikvision": {"DS-2CD2143G2"}, "": {"IP Camera"},
	}, []osInfo{linux}},
	population.KindPrinter: {"Printers", "Imaging", "prn", map[string][]string{
		"HP": {"LaserJet M507"}, "Xerox": {"VersaLink C405"}, "Brother": {"HL-L6200DW"}, "Lexmark": {"MS621"},
		"Zebra": {"ZT411"}, "": {"Printer"},
	}, []osInfo{rtos}},
	population.KindPhone: {"Mobile Phones", "Handhelds", "phone", map[string][]string{
		"Apple": {"iPhone 15"}, "Samsung": {"Galaxy S24"}, "": {"Smartphone"},
	}, []osInfo{iOS, android}},
	population.KindIPPhone: {"IP Phones", "VoIP", "voip", map[string][]string{
		"Cisco": {"IP Phone 8845"}, "Polycom": {"VVX 450"}, "": {"IP Phone"},
	}, []osInfo{linux}},
	population.KindHandheld: {"Handheld Computers", "Handhelds", "hh", map[string][]string{
		"Zebra": {"TC52"}, "Samsung": {"Galaxy Tab Active4 Pro"}, "": {"Handheld"},
	}, []osInfo{android}},
	population.KindPLC: {"PLCs", "Industrial", "plc", map[string][]string{
		"Siemens": {"SIMATIC S7-1500"}, "Rockwell Automation": {"ControlLogix 5580"}, "": {"PLC"},
	}, []osInfo{rtos}},
	population.KindMedical: {"Infusion Pumps", "Medical", "pump", map[string][]string{
		"Baxter": {"Sigma Spectrum"}, "": {"Infusion Pump"},
	}, []osInfo{rtos}},
}

// typeNames are the Armis types in a fixed order; AQL type: filters and the
// core's type index refer to them.
var typeNames = func() []string {
	names := make([]string, 0, len(armisTypes))
	for _, t := range armisTypes {
		names = append(names, t.typ)
	}
	slices.Sort(names)
	return names
}()

func typeIndex(typ string) int { return slices.Index(typeNames, typ) }

// Sites and sensors are fixed; a device gets one of each.
var (
	sites = []Site{
		{Name: "HQ", Location: "New York, NY"},
		{Name: "DC East", Location: "Ashburn, VA"},
		{Name: "DC West", Location: "San Jose, CA"},
		{Name: "Branch London", Location: "London, UK"},
		{Name: "Branch Tokyo", Location: "Tokyo, JP"},
		{Name: "Plant Detroit", Location: "Detroit, MI"},
		{Name: "Hospital Boston", Location: "Boston, MA"},
	}
	sensors = []Sensor{
		{Name: "Sensor HQ-01", Type: "Physical"},
		{Name: "Sensor DC-01", Type: "Virtual"},
		{Name: "Collector Cloud", Type: "Integration"},
	}
)

// boundaries is the boundary vocabulary; AQL boundaries:"…" names these.
var boundaries = []string{"Corporate", "Guest", "OT/ICS", "Lab", "Medical"}

var boundaryWeights = []int{60, 10, 10, 10, 10}

var (
	tagPool        = []string{"Managed", "Unmanaged", "Critical", "PCI", "SCADA", "BYOD", "Off Network", "Lab"}
	visibilities   = []string{"Full", "Limited"}
	visibilityW    = []int{85, 15}
	impacts        = []string{"Unassigned", "Low", "Medium", "High", "Critical"}
	impactWeights  = []int{40, 25, 20, 10, 5}
	owners         = []string{"it-endpoint", "it-network", "facilities", "clinical-eng", "ot-plant"}
	extraIPWeights = []int{88, 9, 3} // 0, 1 or 2 addresses beyond the primary
)
