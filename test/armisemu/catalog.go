package armisemu

// The fixed vocabularies devices are drawn from. Weights are relative.

type maker struct {
	name   string
	models []string
}

type osInfo struct {
	name     string
	versions []string
}

type deviceKind struct {
	typ, category, prefix string
	weight                int
	makers                []maker
	oses                  []osInfo
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
	iOS     = osInfo{"iOS", []string{"17.5", "18.1"}}
	android = osInfo{"Android", []string{"13", "14"}}
	rtos    = osInfo{"VxWorks", []string{"6.9", "7.0"}}
)

var deviceKinds = []deviceKind{
	{"Laptops", "Computers", "laptop", 20, []maker{
		{"Dell", []string{"Latitude 7440", "Latitude 5540"}},
		{"Lenovo", []string{"ThinkPad T14", "ThinkPad X1 Carbon"}},
		{"Apple", []string{"MacBook Pro 14", "MacBook Air 13"}},
	}, []osInfo{windows, macOS, ubuntu}},
	{"Desktops", "Computers", "desktop", 15, []maker{
		{"Dell", []string{"OptiPlex 7010"}},
		{"HP", []string{"EliteDesk 800 G9"}},
	}, []osInfo{windows, ubuntu}},
	{"Servers", "Computers", "srv", 10, []maker{
		{"Dell", []string{"PowerEdge R750", "PowerEdge R650"}},
		{"HPE", []string{"ProLiant DL380 Gen11"}},
	}, []osInfo{rhel, winSrv, esxi}},
	{"Virtual Machines", "Computers", "vm", 6, []maker{
		{"VMware", []string{"Virtual Platform"}},
	}, []osInfo{rhel, winSrv, ubuntu}},
	{"IP Cameras", "Imaging", "cam", 8, []maker{
		{"Axis", []string{"P3265-LVE", "M3106-L"}},
		{"Hikvision", []string{"DS-2CD2143G2"}},
	}, []osInfo{linux}},
	{"Printers", "Imaging", "prn", 5, []maker{
		{"HP", []string{"LaserJet M507"}},
		{"Xerox", []string{"VersaLink C405"}},
	}, []osInfo{rtos}},
	{"Switches", "Network Equipment", "sw", 6, []maker{
		{"Cisco", []string{"Catalyst 9300", "Catalyst 9200"}},
		{"Arista", []string{"7050X3"}},
		{"Juniper", []string{"EX4300"}},
	}, []osInfo{iosXE, eos, junos}},
	{"Routers", "Network Equipment", "rtr", 2, []maker{
		{"Cisco", []string{"ISR 4331"}},
		{"Juniper", []string{"MX204"}},
	}, []osInfo{iosXE, junos}},
	{"Access Points", "Network Equipment", "ap", 6, []maker{
		{"Aruba", []string{"AP-515"}},
		{"Cisco", []string{"Catalyst 9120AX"}},
	}, []osInfo{linux}},
	{"Mobile Phones", "Handhelds", "phone", 15, []maker{
		{"Apple", []string{"iPhone 15"}},
		{"Samsung", []string{"Galaxy S24"}},
	}, []osInfo{iOS, android}},
	{"PLCs", "Industrial", "plc", 4, []maker{
		{"Siemens", []string{"SIMATIC S7-1500"}},
		{"Rockwell Automation", []string{"ControlLogix 5580"}},
	}, []osInfo{rtos}},
	{"Infusion Pumps", "Medical", "pump", 3, []maker{
		{"BD", []string{"Alaris 8015"}},
		{"Baxter", []string{"Sigma Spectrum"}},
	}, []osInfo{rtos}},
}

var kindWeights = func() []int {
	w := make([]int, len(deviceKinds))
	for i, k := range deviceKinds {
		w[i] = k.weight
	}
	return w
}()

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
