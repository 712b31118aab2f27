// Package netboxemu emulates the parts of the NetBox REST API v4 that the
// sync worker uses (see /work/shared/REFERENCE.md): devices, virtual
// machines, their interfaces, MAC and IP addresses, with NetBox's
// pagination, ordering, filters, token schemes and error shapes, the
// shapes of production inventories, and faults and edits that tests inject
// at run time.
//
// # Endpoints
//
//   - GET /api/dcim/devices/ with the filters site, site_id, role, role_id,
//     status, tenant, tag (repeatable; every tag must match, as in NetBox),
//     has_primary_ip, q (name, serial, asset tag), name, id,
//     cf_criticality, cf_monitored, cf_asset_owner and last_updated__gte.
//     Repeated values of the other filters are ORed, as in NetBox. An
//     unknown slug or status is a 400 in NetBox's shape:
//     {"site":["Select a valid choice. x is not one of the available choices."]}.
//   - GET /api/dcim/interfaces/ with device_id, device (name), mac_address
//     and id. Each device has Options.InterfacesPerDevice interfaces: eth0…
//     with a MAC, and, when there are two or more, a last "lo0" (virtual)
//     whose mac_address is null. As in NetBox 4.2+, primary_mac_address is
//     the interface's own MAC (mac_address repeats it) and mac_addresses
//     lists every MAC assigned to it ordered by address.
//   - GET /api/dcim/mac-addresses/ (NetBox 4.2+) with mac_address,
//     device_id, device, virtual_machine_id, interface_id,
//     assigned_object_id and id, ordered by address: one object per
//     interface MAC, and the shared virtual MAC of router pairs.
//   - GET /api/ipam/ip-addresses/ with device_id, device,
//     virtual_machine_id, family and id: every address assigned to an
//     interface, primary or not.
//   - GET /api/virtualization/virtual-machines/ with the device filters (no
//     "inventory" status) and GET /api/virtualization/interfaces/ with
//     virtual_machine_id and id: Options.VirtualMachines VMs, one interface
//     each with a VMware MAC.
//
// Unknown ids behave per endpoint as in NetBox: the interface lists refuse
// an unknown (or deleted) device or VM id with a 400 naming it ("Select a
// valid choice. 42 is not one of the available choices."), the MAC and IP
// address lists ignore it.
//
// A known path without its trailing slash answers 301 to the path with it,
// as NetBox does; other paths answer 404 {"detail":"Not found."}. With
// Options.PathPrefix the API is served under that prefix only, and its
// links leave the prefix out, as NetBox behind a prefix-stripping proxy
// writes them.
//
// Lists take limit/offset (default 50, at most 1000; limit=0 means 1000, a
// negative or unparseable limit the default) and answer
// {"count","next","previous","results"} with next and previous as absolute
// URLs built from the request's Host. Devices and VMs on limit/offset pages
// are in NetBox's order, by natural name (unnamed last) then id, so an edit
// between two pages shifts rows across them. NetBox 4.6 cursor paging is
// there too (unless Options.NoCursor): start=<pk>&limit=N answers rows in id
// order with id ≥ pk, count and previous null, and next carrying
// start=<last id + 1>. brief=true, fields=a,b and exclude=config_context
// trim the objects as in NetBox; Stats.ConfigContexts counts the config
// contexts NetBox would have rendered (all but brief lists and those
// excluding config_context). Other lists are in id order (MAC addresses by
// address).
//
// # Authentication
//
// As in NetBox 4.5+: "Authorization: Token <key>" or "Authorization: Bearer
// <key>", the key's form choosing its version: v2 keys are
// nbt_<key>.<token>, anything else is a v1 key (40 alphanumerics). Failures
// are 403 {"detail": …} with "Invalid v1 token", "Invalid v2 token", "Token
// expired" or, with no header or another scheme, "Authentication
// credentials were not provided.". With Options.DisableV2 the server
// behaves like NetBox before 4.5: a Bearer header counts as no credentials
// and every key is a v1 key.
//
// # Inventory
//
// Device id i+1 is a pure function of (Options.Seed, i, Options.Epoch): a
// PCG generator seeded with (Seed, i) draws its site, role, status (every
// NetBox status), tenant, platform, serial, tags, custom fields and times;
// names and addresses are derived from those and from i, so nothing is
// stored and every address is unique. eth0 has 10.0.0.0/8 plus i+1, which
// is primary_ip4 for 90% of devices (most others have it without a
// primary), 30% have 2001:db8::<i+1 hex> (primary_ip6), and 20% a loopback
// in 100.64.0.0/10 on lo0. Interface MACs are their manufacturer's real
// OUI and 24 bits that are a bijection of the MAC's ordinal. A router at an
// even ordinal pairs with the next device (a router too): both carry the
// pair's HSRP, GLBP or VRRP virtual MAC on eth0 besides their own. Some
// access switches are members of virtual chassis of four ordinals, the
// members after the first unnamed. With Options.Overlap, the shared
// ordinals carry the population package's shared name, MAC and addresses.
// DeleteDevices and RenameDevice edit the inventory while clients page.
// Filtered lists are answered from cached sorted lists of matching
// ordinals, built on first use of a filter.
//
// # Faults
//
// Faults are set at run time with methods on Server and are safe for
// concurrent use: added latency, 429 with Retry-After for the next K
// requests, a burst of K 5xx answers, broken pages (the page of a list that
// starts at a given row always answers 500 or a truncated body), and token
// expiry now or after K authorized requests. Counters of what was served are
// read with Stats.
package netboxemu
