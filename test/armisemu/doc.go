// Package armisemu emulates the parts of the Armis API v1 that the sync worker
// uses (see /work/shared/REFERENCE.md): the access token exchange and the
// paginated AQL search over devices, with faults that tests inject at run time.
//
// # Endpoints
//
//   - POST /api/v1/access_token/ with secret_key in the form body (or, as some
//     clients send it, in the URL query) answers
//     {"data":{"access_token":"…","expiration_utc":"…"},"success":true}.
//     A missing or wrong key gets 400 {"message":"Invalid secret key","success":false}
//     as Armis answers it (Options.BadSecretStatus chooses another status);
//     the shape follows every other Armis error.
//   - GET /api/v1/search/?aql=…&from=…&length=… (optional orderBy=id|lastSeen,
//     includeTotal, fields=a,b) needs "Authorization: <access token>", the raw
//     token with no scheme word; anything else, an expired token included, gets
//     401 {"message":"Invalid access token","success":false}. The answer is
//     {"data":{"count","next","prev","results","total"},"success":true} where
//     next is the offset of the next page or null on the last page, and prev is
//     the offset of the previous page or null on the first. length defaults to
//     100 and must be 1..5000, otherwise 400.
//
// Every other path answers 404 and every other method 405, both with the same
// {"message","success":false} shape.
//
// # Inventory
//
// The inventory is Options.Devices devices with ids 1..N. Device id i+1 is a
// pure function of (Options.Seed, i, Options.Epoch): a PCG generator seeded
// with (Seed, i) draws its attributes, so a device is generated when a page
// needs it and the emulator never holds the inventory. Identities look like
// production (package population): MACs are lower-case, globally
// administered, under real vendor OUIs and unique in the inventory; the
// manufacturer is the first MAC's vendor and the type one that vendor makes.
// IPv4 addresses are unique by construction: the primary from 172.16.0.0/12
// (then 100.64.0.0/10 past 2^20 devices), extra ones from 10.0.0.0/8.
// Multi-valued strings (ipAddress, ipv6, macAddress, boundaries) are joined
// with ", ": a client must split on commas and trim. About 5% of devices have
// a null macAddress, 75% one MAC, and a few up to 200; 20% have IPv6, up to
// three addresses (global, unique local, link-local). lastSeen and firstSeen
// carry microseconds, or for about a tenth of devices whole seconds.
//
// Options.Overlap makes a share of devices ones that other generators (the
// Faker, the NetBox emulator) given the same Overlap report with the same
// MAC, IPv4, IPv6 and name. Options.RedundancyPairEvery adds pairs of routers
// that both list their HSRP or VRRP group's virtual MAC.
//
// # AQL
//
// The search understands the terms the reference shows: in:devices
// (required, once, at the top level), timeFrame:"<n> <Seconds|Minutes|Hours|Days|Weeks>"
// (lastSeen within that span before Options.Epoch, the instant the inventory
// is observed at), after:<YYYY-MM-DDTHH:MM:SS> (lastSeen strictly after that
// second, UTC), boundaries:"A,B", type:"IP Cameras",Printers and
// site:"DC East" (any of the names, case-insensitive). Terms are ANDed;
// "!" or NOT negates a term or a group, OR (or "or") alternates, AND is
// optional, and parentheses group. Anything else is a 400. Results are
// ordered by id unless orderBy=lastSeen.
//
// Different queries return overlapping device sets: a device whose boundaries
// are "Corporate, Lab" matches both boundaries:"Corporate" and
// boundaries:"Lab", and any device seen in the last 3 days also matches
// timeFrame:"7 Days". A client running several queries must merge results by
// device id; MatchingIDs gives tests the expected set of each query.
//
// Filtered or lastSeen-ordered searches are answered from a cached, sorted list
// of matching ordinals (4 bytes a device), built on first use of a query.
//
// # Faults
//
// Faults are set at run time with methods on Server and are safe for
// concurrent use: added latency, 429 with Retry-After for the next K requests,
// a burst of K 5xx answers, broken pages (a given from offset always answers
// 500 or a truncated body), and token expiry now or after K searches. Counters
// of what was served are read with Stats.
package armisemu
