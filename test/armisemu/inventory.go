package armisemu

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/serviceradar/sync-operator/test/apifault/ordinals"
)

// Device is one Armis device as the search returns it, with the fields and
// casing of REFERENCE.md. Absent addresses are null.
type Device struct {
	// ID is the Armis device id, 1..N.
	ID int `json:"id"`
	// IPAddress holds one or more IPv4 addresses joined with ", ", or null.
	IPAddress *string `json:"ipAddress"`
	// IPv6 is an IPv6 address or null.
	IPv6 *string `json:"ipv6"`
	// MacAddress holds zero or more MACs joined with ", "; empty when none.
	MacAddress string `json:"macAddress"`
	// Name is the host name; empty for about 2% of devices.
	Name string `json:"name"`
	// Type is the device type, for example "Laptops".
	Type string `json:"type"`
	// Category groups types, for example "Computers".
	Category string `json:"category"`
	// Manufacturer is the vendor.
	Manufacturer string `json:"manufacturer"`
	// Model is the vendor's model.
	Model string `json:"model"`
	// OperatingSystem is the OS name.
	OperatingSystem string `json:"operatingSystem"`
	// OperatingSystemVersion is the OS version.
	OperatingSystemVersion string `json:"operatingSystemVersion"`
	// FirstSeen is ISO 8601 with microseconds and offset.
	FirstSeen string `json:"firstSeen"`
	// LastSeen is ISO 8601 with microseconds and offset.
	LastSeen string `json:"lastSeen"`
	// RiskLevel is 1..10.
	RiskLevel int `json:"riskLevel"`
	// Boundaries holds one or two boundary names joined with ", ".
	Boundaries string `json:"boundaries"`
	// Tags is a list, possibly empty, never null.
	Tags []string `json:"tags"`
	// Site is where the device is.
	Site Site `json:"site"`
	// Sensor is what saw the device.
	Sensor Sensor `json:"sensor"`
	// CustomProperties is an object, possibly empty.
	CustomProperties map[string]string `json:"customProperties"`
	// Visibility is "Full" or "Limited".
	Visibility string `json:"visibility"`
	// BusinessImpact is "Unassigned", "Low", "Medium", "High" or "Critical".
	BusinessImpact string `json:"businessImpact"`
}

// Site is a device's site.
type Site struct {
	// Name of the site.
	Name string `json:"name"`
	// Location of the site.
	Location string `json:"location"`
}

// Sensor is the sensor or integration that saw a device.
type Sensor struct {
	// Name of the sensor.
	Name string `json:"name"`
	// Type of the sensor.
	Type string `json:"type"`
}

// inventory generates devices on demand from (seed, ordinal, epoch).
type inventory struct {
	seed  uint64
	n     int
	epoch time.Time
}

// Spans over which timestamps are spread, in microseconds.
const (
	lastSeenSpan  = int64(30 * 24 * time.Hour / time.Microsecond)
	firstSeenSpan = int64(365 * 24 * time.Hour / time.Microsecond)
)

// core holds the attributes AQL filters on. They are the first draws of a
// device's generator, so a filter scan computes only these.
type core struct {
	lastSeen   time.Time
	boundaries uint8 // bit b set: in boundaries[b]
}

func (inv *inventory) rng(i int) *rand.Rand {
	return rand.New(rand.NewPCG(inv.seed, uint64(i)))
}

func (inv *inventory) drawCore(r *rand.Rand) core {
	c := core{lastSeen: inv.epoch.Add(-time.Duration(r.Int64N(lastSeenSpan)) * time.Microsecond)}
	first := ordinals.Pick(r, boundaryWeights)
	c.boundaries = 1 << first
	if r.IntN(100) < 15 {
		second := (first + 1 + r.IntN(len(boundaries)-1)) % len(boundaries)
		c.boundaries |= 1 << second
	}
	return c
}

// core returns the filter attributes of ordinal i.
func (inv *inventory) core(i int) core {
	return inv.drawCore(inv.rng(i))
}

// device generates ordinal i (id i+1).
func (inv *inventory) device(i int) Device {
	r := inv.rng(i)
	c := inv.drawCore(r)
	kind := deviceKinds[ordinals.Pick(r, kindWeights)]
	mk := kind.makers[r.IntN(len(kind.makers))]
	os := kind.oses[r.IntN(len(kind.oses))]
	d := Device{
		ID:                     i + 1,
		Type:                   kind.typ,
		Category:               kind.category,
		Manufacturer:           mk.name,
		Model:                  mk.models[r.IntN(len(mk.models))],
		OperatingSystem:        os.name,
		OperatingSystemVersion: os.versions[r.IntN(len(os.versions))],
		LastSeen:               c.lastSeen.Format(timeLayout),
		FirstSeen:              c.lastSeen.Add(-time.Duration(r.Int64N(firstSeenSpan)) * time.Microsecond).Format(timeLayout),
		RiskLevel:              1 + r.IntN(10),
		Boundaries:             boundaryNames(c.boundaries),
		Site:                   sites[r.IntN(len(sites))],
		Sensor:                 sensors[r.IntN(len(sensors))],
		Visibility:             visibilities[ordinals.Pick(r, visibilityW)],
		BusinessImpact:         impacts[ordinals.Pick(r, impactWeights)],
		Tags:                   []string{},
		CustomProperties:       map[string]string{},
	}
	if r.IntN(100) >= 2 {
		d.Name = fmt.Sprintf("%s-%06d", kind.prefix, i+1)
	}
	if r.IntN(100) >= 1 {
		d.IPAddress = ptr(inv.ipv4s(i, ordinals.Pick(r, extraIPWeights)))
	}
	if r.IntN(100) < 20 {
		d.IPv6 = ptr(fmt.Sprintf("fd00:a5::%x", i+1))
	}
	d.MacAddress = inv.macs(i, macCount(r))
	for t := range tagPool {
		if r.IntN(100) < 12 {
			d.Tags = append(d.Tags, tagPool[t])
		}
	}
	if r.IntN(2) == 0 {
		d.CustomProperties["assetOwner"] = owners[r.IntN(len(owners))]
	}
	if r.IntN(10) < 3 {
		d.CustomProperties["costCenter"] = fmt.Sprintf("CC-%04d", r.IntN(10000))
	}
	return d
}

// macCount is weighted to few: 5% none, 75% one, 17% two to four, 3% five to
// two hundred (skewed low).
func macCount(r *rand.Rand) int {
	switch p := r.IntN(100); {
	case p < 5:
		return 0
	case p < 80:
		return 1
	case p < 97:
		return 2 + r.IntN(3)
	default:
		u := r.Float64()
		return 5 + int(195*u*u*u)
	}
}

// Address plan: every address is a function of the ordinal, so addresses are
// unique across the inventory without bookkeeping.
var (
	primaryBase  = netip.MustParseAddr("172.16.0.0") // /12: 2^20 addresses
	overflowBase = netip.MustParseAddr("100.64.0.0") // /10: 2^22 addresses
	extraBase    = netip.MustParseAddr("10.0.0.0")   // /8: two per device
	primarySize  = 1<<20 - 1                         // ordinals served from 172.16/12
)

func addOffset(base netip.Addr, off int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// primaryIP returns the first address of ordinal i's ipAddress field.
func primaryIP(i int) netip.Addr {
	if i < primarySize {
		return addOffset(primaryBase, i+1)
	}
	return addOffset(overflowBase, i-primarySize+1)
}

func (inv *inventory) ipv4s(i, extra int) string {
	ips := make([]string, 0, 1+extra)
	ips = append(ips, primaryIP(i).String())
	for k := range extra {
		ips = append(ips, addOffset(extraBase, 2*i+k+1).String())
	}
	return strings.Join(ips, ", ")
}

func (inv *inventory) macs(i, count int) string {
	var b strings.Builder
	for k := range count {
		if k > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "02:%02x:%02x:%02x:%02x:%02x", byte(inv.seed), byte(i>>16), byte(i>>8), byte(i), byte(k))
	}
	return b.String()
}

func boundaryNames(mask uint8) string {
	names := make([]string, 0, 2)
	for b, name := range boundaries {
		if mask&(1<<b) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}

func ptr[T any](v T) *T { return &v }

// Salts keep the seed-derived streams apart.
const (
	saltToken uint64 = 0x746f6b656e
)

// Device returns the device with the given id, as the search would return
// it, and false when no device has that id.
func (s *Server) Device(id int) (Device, bool) {
	if id < 1 || id > s.inv.n {
		return Device{}, false
	}
	return s.inv.device(id - 1), true
}
