// Package netboxemu emulates the parts of the NetBox REST API v4 that the
// sync worker uses (see /work/shared/REFERENCE.md): devices, interfaces and
// MAC addresses, with NetBox's pagination, filters, token schemes and error
// shapes, and faults that tests inject at run time.
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
//     whose mac_address is null.
//   - GET /api/dcim/mac-addresses/ (NetBox 4.2+) with mac_address,
//     device_id, interface_id, assigned_object_id and id: one object per
//     interface MAC, assigned to that interface.
//
// A known path without its trailing slash answers 301 to the path with it,
// as NetBox does; other paths answer 404 {"detail":"Not found."}.
//
// Lists take limit/offset (default 50, at most 1000; limit=0 means 1000, a
// negative or unparseable limit the default) and answer
// {"count","next","previous","results"} with next and previous as absolute
// URLs built from the request's Host. NetBox 4.6 cursor paging is there too:
// start=<pk>&limit=N answers rows with id ≥ pk, count and previous null, and
// next carrying start=<last id + 1>. brief=true, fields=a,b and
// exclude=config_context trim the objects as in NetBox. Results are in id
// order (NetBox orders devices by name; id order keeps pages stable).
//
// # Authentication
//
// v1: "Authorization: Token <40 hex>"; v2 (NetBox 4.5+):
// "Authorization: Bearer nbt_<key>.<token>". The right token of the wrong
// form fails. Failures are 403 {"detail": …} with "Invalid v1 token",
// "Invalid v2 token", "Token expired" or, with no header or another scheme,
// "Authentication credentials were not provided.". With Options.DisableV2
// the server behaves like NetBox before 4.5: a Bearer header counts as no
// credentials.
//
// # Inventory
//
// Device id i+1 is a pure function of (Options.Seed, i, Options.Epoch): a
// PCG generator seeded with (Seed, i) draws its site, role, status, tenant,
// tags, custom fields and times; names, serials and addresses are derived from
// those and from i, so nothing is stored and every address is unique:
// primary_ip4 is 10.0.0.0/8 plus i+1 (90% of devices), primary_ip6 is
// 2001:db8::<i+1 hex> (30%), and interface MACs are
// 02:<seed byte>:<4 bytes of the MAC's ordinal>. Filtered device lists are
// answered from a cached sorted list of matching ordinals, built on first use
// of a filter.
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
