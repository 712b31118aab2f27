package netboxemu

import "encoding/json"

// JSON shapes of NetBox v4 objects, fields in NetBox's order. Fields NetBox
// always has but the emulator never fills are typed any and are null.

// Ref is a nested object with a name and a slug (site, role, tenant,
// platform, manufacturer).
type Ref struct {
	// ID of the object.
	ID int `json:"id"`
	// URL is the object's absolute API URL.
	URL string `json:"url"`
	// Display is how NetBox shows the object.
	Display string `json:"display"`
	// Name of the object.
	Name string `json:"name"`
	// Slug of the object.
	Slug string `json:"slug"`
	// Description of the object.
	Description string `json:"description"`
}

// DeviceTypeRef is a nested device type.
type DeviceTypeRef struct {
	// ID of the device type.
	ID int `json:"id"`
	// URL is the device type's absolute API URL.
	URL string `json:"url"`
	// Display is the model name.
	Display string `json:"display"`
	// Manufacturer makes the device type.
	Manufacturer Ref `json:"manufacturer"`
	// Model is the model name.
	Model string `json:"model"`
	// Slug of the device type.
	Slug string `json:"slug"`
	// Description of the device type.
	Description string `json:"description"`
}

// Choice is a NetBox choice field such as status.
type Choice struct {
	// Value is the machine value, for example "active".
	Value string `json:"value"`
	// Label is the human label, for example "Active".
	Label string `json:"label"`
}

// Family is an IP address family.
type Family struct {
	// Value is 4 or 6.
	Value int `json:"value"`
	// Label is "IPv4" or "IPv6".
	Label string `json:"label"`
}

// IPRef is a nested IP address such as primary_ip4.
type IPRef struct {
	// ID of the IP address object.
	ID int `json:"id"`
	// URL is the IP address's absolute API URL.
	URL string `json:"url"`
	// Display is the address with its prefix length.
	Display string `json:"display"`
	// Family is IPv4 or IPv6.
	Family Family `json:"family"`
	// Address is the address with its prefix length, for example "10.0.0.1/24".
	Address string `json:"address"`
	// DNSName is the address's DNS name, possibly empty.
	DNSName string `json:"dns_name"`
	// Description of the address.
	Description string `json:"description"`
}

// TagRef is a nested tag.
type TagRef struct {
	// ID of the tag.
	ID int `json:"id"`
	// URL is the tag's absolute API URL.
	URL string `json:"url"`
	// Display is the tag's name.
	Display string `json:"display"`
	// Name of the tag.
	Name string `json:"name"`
	// Slug of the tag, what the tag filter takes.
	Slug string `json:"slug"`
	// Color is six hex digits.
	Color string `json:"color"`
}

// Device is a NetBox device as /api/dcim/devices/ returns it.
type Device struct {
	// ID is the device's primary key, 1..N.
	ID int `json:"id"`
	// URL is the device's absolute API URL.
	URL string `json:"url"`
	// DisplayURL is the device's absolute UI URL.
	DisplayURL string `json:"display_url"`
	// Display is the name, or "<manufacturer> <model> (<id>)" when unnamed.
	Display string `json:"display"`
	// Name is null for about 3% of devices.
	Name *string `json:"name"`
	// DeviceType holds the manufacturer and model.
	DeviceType DeviceTypeRef `json:"device_type"`
	// Role is the device role.
	Role Ref `json:"role"`
	// Tenant is null for about 30% of devices.
	Tenant *Ref `json:"tenant"`
	// Platform is null for some roles and about 10% of the others.
	Platform *Ref `json:"platform"`
	// Serial is possibly empty.
	Serial string `json:"serial"`
	// AssetTag is null for about 40% of devices.
	AssetTag *string `json:"asset_tag"`
	// Site is where the device is.
	Site Ref `json:"site"`
	// Location is always null.
	Location any `json:"location"`
	// Rack is always null.
	Rack any `json:"rack"`
	// Position is always null.
	Position any `json:"position"`
	// Face is always null.
	Face any `json:"face"`
	// Latitude is always null.
	Latitude any `json:"latitude"`
	// Longitude is always null.
	Longitude any `json:"longitude"`
	// ParentDevice is always null.
	ParentDevice any `json:"parent_device"`
	// Status is the device status.
	Status Choice `json:"status"`
	// Airflow is always null.
	Airflow any `json:"airflow"`
	// PrimaryIP is primary_ip6 when set, else primary_ip4 (PREFER_IPV4 off).
	PrimaryIP *IPRef `json:"primary_ip"`
	// PrimaryIP4 is set for about 90% of devices.
	PrimaryIP4 *IPRef `json:"primary_ip4"`
	// PrimaryIP6 is set for about 30% of devices.
	PrimaryIP6 *IPRef `json:"primary_ip6"`
	// OOBIP is always null.
	OOBIP any `json:"oob_ip"`
	// Cluster is always null.
	Cluster any `json:"cluster"`
	// VirtualChassis is the stack of some access switches, else null.
	VirtualChassis *VirtualChassisRef `json:"virtual_chassis"`
	// VCPosition is the member's position in its virtual chassis, else null.
	VCPosition *int `json:"vc_position"`
	// VCPriority is always null.
	VCPriority any `json:"vc_priority"`
	// Description is empty.
	Description string `json:"description"`
	// Comments is empty.
	Comments string `json:"comments"`
	// ConfigTemplate is always null.
	ConfigTemplate any `json:"config_template"`
	// ConfigContext is the rendered config context; exclude=config_context
	// drops it.
	ConfigContext json.RawMessage `json:"config_context"`
	// LocalContextData is always null.
	LocalContextData any `json:"local_context_data"`
	// Tags lists the device's tags, possibly empty, never null.
	Tags []TagRef `json:"tags"`
	// CustomFields holds the device's custom fields.
	CustomFields DeviceCustomFields `json:"custom_fields"`
	// Created is ISO 8601 with microseconds, UTC ("Z").
	Created string `json:"created"`
	// LastUpdated is ISO 8601 with microseconds, UTC ("Z").
	LastUpdated string `json:"last_updated"`
	// InterfaceCount is the number of interfaces.
	InterfaceCount int `json:"interface_count"`
}

// DeviceCustomFields are the custom fields every device has; the cf_<name>
// filters take their values.
type DeviceCustomFields struct {
	// AssetOwner is a team name, or null for about 20% of devices.
	AssetOwner *string `json:"asset_owner"`
	// Criticality is "low", "medium" or "high".
	Criticality string `json:"criticality"`
	// Monitored is true for about 70% of devices.
	Monitored bool `json:"monitored"`
}

// DeviceRef is a nested device, as interfaces refer to theirs.
type DeviceRef struct {
	// ID of the device.
	ID int `json:"id"`
	// URL is the device's absolute API URL.
	URL string `json:"url"`
	// Display is as in Device.
	Display string `json:"display"`
	// Name is null when the device has none.
	Name *string `json:"name"`
	// Description of the device.
	Description string `json:"description"`
}

// MACRef is a nested MAC address.
type MACRef struct {
	// ID of the MAC address object.
	ID int `json:"id"`
	// URL is the MAC address's absolute API URL.
	URL string `json:"url"`
	// Display is the MAC address.
	Display string `json:"display"`
	// MACAddress is upper case with colons.
	MACAddress string `json:"mac_address"`
	// Description of the MAC address.
	Description string `json:"description"`
}

// Interface is a NetBox interface as /api/dcim/interfaces/ returns it.
type Interface struct {
	// ID is the interface's primary key.
	ID int `json:"id"`
	// URL is the interface's absolute API URL.
	URL string `json:"url"`
	// DisplayURL is the interface's absolute UI URL.
	DisplayURL string `json:"display_url"`
	// Display is the interface name.
	Display string `json:"display"`
	// Device owns the interface.
	Device DeviceRef `json:"device"`
	// Name is "eth<n>" or "lo0".
	Name string `json:"name"`
	// Label is empty.
	Label string `json:"label"`
	// Type is 1000base-t, or virtual for lo0.
	Type Choice `json:"type"`
	// Enabled is true.
	Enabled bool `json:"enabled"`
	// MTU is always null.
	MTU any `json:"mtu"`
	// MACAddress is the primary MAC, or null for lo0.
	MACAddress *string `json:"mac_address"`
	// PrimaryMACAddress is the nested primary MAC, or null for lo0.
	PrimaryMACAddress *MACRef `json:"primary_mac_address"`
	// MACAddresses lists the interface's MACs, possibly empty.
	MACAddresses []MACRef `json:"mac_addresses"`
	// MgmtOnly is false.
	MgmtOnly bool `json:"mgmt_only"`
	// Description is empty.
	Description string `json:"description"`
	// Cable is always null.
	Cable any `json:"cable"`
	// Tags is empty.
	Tags []TagRef `json:"tags"`
	// CustomFields is empty.
	CustomFields map[string]any `json:"custom_fields"`
	// Created is the device's creation time.
	Created string `json:"created"`
	// LastUpdated is the device's last update.
	LastUpdated string `json:"last_updated"`
	// Occupied is false: no cable.
	Occupied bool `json:"_occupied"`
}

// AssignedInterface is the interface a MAC or IP address is assigned to:
// a device's (dcim.interface) or a virtual machine's
// (virtualization.vminterface).
type AssignedInterface struct {
	// ID of the interface.
	ID int `json:"id"`
	// URL is the interface's absolute API URL.
	URL string `json:"url"`
	// Display is the interface name.
	Display string `json:"display"`
	// Device owns a device interface; absent for a VM interface.
	Device *DeviceRef `json:"device,omitempty"`
	// VirtualMachine owns a VM interface; absent for a device interface.
	VirtualMachine *DeviceRef `json:"virtual_machine,omitempty"`
	// Name of the interface.
	Name string `json:"name"`
	// Description of the interface.
	Description string `json:"description"`
	// Cable is always null.
	Cable any `json:"cable"`
	// Occupied is false.
	Occupied bool `json:"_occupied"`
}

// MACAddress is a NetBox 4.2+ MAC address object as
// /api/dcim/mac-addresses/ returns it.
type MACAddress struct {
	// ID of the MAC address object.
	ID int `json:"id"`
	// URL is its absolute API URL.
	URL string `json:"url"`
	// DisplayURL is its absolute UI URL.
	DisplayURL string `json:"display_url"`
	// Display is the MAC address.
	Display string `json:"display"`
	// MACAddress is upper case with colons.
	MACAddress string `json:"mac_address"`
	// AssignedObjectType is "dcim.interface" or "virtualization.vminterface".
	AssignedObjectType string `json:"assigned_object_type"`
	// AssignedObjectID is the interface id.
	AssignedObjectID int `json:"assigned_object_id"`
	// AssignedObject is the interface.
	AssignedObject AssignedInterface `json:"assigned_object"`
	// Description is empty.
	Description string `json:"description"`
	// Comments is empty.
	Comments string `json:"comments"`
	// Tags is empty.
	Tags []TagRef `json:"tags"`
	// CustomFields is empty.
	CustomFields map[string]any `json:"custom_fields"`
	// Created is the device's creation time.
	Created string `json:"created"`
	// LastUpdated is the device's last update.
	LastUpdated string `json:"last_updated"`
}

// VirtualChassisRef is a nested virtual chassis.
type VirtualChassisRef struct {
	// ID of the virtual chassis.
	ID int `json:"id"`
	// URL is its absolute API URL.
	URL string `json:"url"`
	// Display is its name.
	Display string `json:"display"`
	// Name of the virtual chassis.
	Name string `json:"name"`
	// Description is empty.
	Description string `json:"description"`
}

// VirtualMachine is a NetBox virtual machine as
// /api/virtualization/virtual-machines/ returns it.
type VirtualMachine struct {
	// ID is the VM's primary key, 1..Options.VirtualMachines.
	ID int `json:"id"`
	// URL is the VM's absolute API URL.
	URL string `json:"url"`
	// DisplayURL is the VM's absolute UI URL.
	DisplayURL string `json:"display_url"`
	// Display is the VM's name.
	Display string `json:"display"`
	// Name is the VM's name (required in NetBox).
	Name string `json:"name"`
	// Status is the VM status (no "inventory" for VMs).
	Status Choice `json:"status"`
	// Site is where the VM runs.
	Site Ref `json:"site"`
	// Cluster is always null.
	Cluster any `json:"cluster"`
	// Device is always null.
	Device any `json:"device"`
	// Serial is possibly empty.
	Serial string `json:"serial"`
	// Role is the VM's role.
	Role Ref `json:"role"`
	// Tenant is null for about 30% of VMs.
	Tenant *Ref `json:"tenant"`
	// Platform is the VM's operating system, or null.
	Platform *Ref `json:"platform"`
	// PrimaryIP is primary_ip6 when set, else primary_ip4.
	PrimaryIP *IPRef `json:"primary_ip"`
	// PrimaryIP4 is set for most VMs.
	PrimaryIP4 *IPRef `json:"primary_ip4"`
	// PrimaryIP6 is set for some VMs.
	PrimaryIP6 *IPRef `json:"primary_ip6"`
	// VCPUs is the number of virtual CPUs.
	VCPUs float64 `json:"vcpus"`
	// Memory is in MB.
	Memory int `json:"memory"`
	// Disk is in MB.
	Disk int `json:"disk"`
	// Description is empty.
	Description string `json:"description"`
	// Comments is empty.
	Comments string `json:"comments"`
	// ConfigContext is the rendered config context; exclude=config_context
	// drops it.
	ConfigContext json.RawMessage `json:"config_context"`
	// Tags lists the VM's tags.
	Tags []TagRef `json:"tags"`
	// CustomFields holds the same custom fields as devices.
	CustomFields DeviceCustomFields `json:"custom_fields"`
	// Created is ISO 8601 with microseconds.
	Created string `json:"created"`
	// LastUpdated is ISO 8601 with microseconds.
	LastUpdated string `json:"last_updated"`
	// InterfaceCount is the number of interfaces.
	InterfaceCount int `json:"interface_count"`
}

// VMInterface is a virtual machine's interface as
// /api/virtualization/interfaces/ returns it.
type VMInterface struct {
	// ID is the interface's primary key (the VM's id: one each).
	ID int `json:"id"`
	// URL is its absolute API URL.
	URL string `json:"url"`
	// DisplayURL is its absolute UI URL.
	DisplayURL string `json:"display_url"`
	// Display is the interface name.
	Display string `json:"display"`
	// VirtualMachine owns the interface.
	VirtualMachine DeviceRef `json:"virtual_machine"`
	// Name is "eth0".
	Name string `json:"name"`
	// Enabled is true.
	Enabled bool `json:"enabled"`
	// MTU is always null.
	MTU any `json:"mtu"`
	// MACAddress is the primary MAC.
	MACAddress *string `json:"mac_address"`
	// PrimaryMACAddress is the nested primary MAC.
	PrimaryMACAddress *MACRef `json:"primary_mac_address"`
	// MACAddresses lists the interface's MACs.
	MACAddresses []MACRef `json:"mac_addresses"`
	// Description is empty.
	Description string `json:"description"`
	// Tags is empty.
	Tags []TagRef `json:"tags"`
	// CustomFields is empty.
	CustomFields map[string]any `json:"custom_fields"`
	// Created is the VM's creation time.
	Created string `json:"created"`
	// LastUpdated is the VM's last update.
	LastUpdated string `json:"last_updated"`
}

// IPAddress is an IP address as /api/ipam/ip-addresses/ returns it.
type IPAddress struct {
	// ID of the IP address object.
	ID int `json:"id"`
	// URL is its absolute API URL.
	URL string `json:"url"`
	// DisplayURL is its absolute UI URL.
	DisplayURL string `json:"display_url"`
	// Display is the address with its prefix length.
	Display string `json:"display"`
	// Family is IPv4 or IPv6.
	Family Family `json:"family"`
	// Address is the address with its prefix length.
	Address string `json:"address"`
	// VRF is always null.
	VRF any `json:"vrf"`
	// Tenant is always null.
	Tenant any `json:"tenant"`
	// Status is active.
	Status Choice `json:"status"`
	// Role is null, or loopback for loopback addresses.
	Role *Choice `json:"role"`
	// AssignedObjectType is "dcim.interface" or "virtualization.vminterface".
	AssignedObjectType string `json:"assigned_object_type"`
	// AssignedObjectID is the interface id.
	AssignedObjectID int `json:"assigned_object_id"`
	// AssignedObject is the interface.
	AssignedObject AssignedInterface `json:"assigned_object"`
	// NATInside is always null.
	NATInside any `json:"nat_inside"`
	// NATOutside is always empty.
	NATOutside []any `json:"nat_outside"`
	// DNSName is possibly empty.
	DNSName string `json:"dns_name"`
	// Description is empty.
	Description string `json:"description"`
	// Comments is empty.
	Comments string `json:"comments"`
	// Tags is empty.
	Tags []TagRef `json:"tags"`
	// CustomFields is empty.
	CustomFields map[string]any `json:"custom_fields"`
	// Created is the owner's creation time.
	Created string `json:"created"`
	// LastUpdated is the owner's last update.
	LastUpdated string `json:"last_updated"`
}
