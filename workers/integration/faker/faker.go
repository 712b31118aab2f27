// Package faker is the built-in synthetic inventory: a deterministic set of
// devices generated from the source's spec (count, seed, churn, overlap), so
// demos, tests and benchmarks have an inventory of any size without an
// outside system. Device i always has the same id, hostname and MACs (1 to
// 200, weighted towards few), which look like production ones: globally
// administered MACs under real vendor OUIs, unique within the source, the
// vendor being the first MAC's and the kind of device one it makes (package
// population). Primary IPs come from 172.16.0.0/12, and every pass after the
// first swaps the primary IPs of churnPercent of the devices, as DHCP does.
// The device set never changes.
//
// With an overlap (spec.faker.overlap), a share of the devices are ones that
// other generators given the same overlap seed report too (another Faker
// source, the Armis and NetBox emulators): such a device has the shared MAC,
// IPv4 (198.18.0.0/15), IPv6 and hostname of population.Overlap.Device, and
// keeps its address through churn, like a server with a static address.
package faker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/serviceradar/sync-operator/wire/pagesize"
	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// IntegrationType is the source type and metadata value.
const IntegrationType = "faker"

// MetaDeviceID is the metadata key of the Faker's device id.
const MetaDeviceID = "faker_device_id"

// pageLimits are the Faker's page sizes (wire/pagesize): how many devices
// each emitted page holds unless the source sets it, and the most it may set.
var pageLimits = pagesize.MustFor(IntegrationType)

// maxDevices is the size of 172.16.0.0/12 minus network and broadcast.
const maxDevices = 1<<20 - 2

// Client generates one source's inventory. It keeps the current primary IP
// of every device (4 bytes each: 4 MiB for 1,000,000 devices) so that churn
// accumulates across passes.
type Client struct {
	cfg   integration.Config
	n     int
	seed  uint64
	churn int
	page  int
	// overlap selects the devices shared with other generators.
	overlap population.Overlap

	mu     sync.Mutex
	ips    []uint32 // offsets into 172.16.0.0/12, by device
	passes int
}

// New validates the spec: devices between 1 and 1,048,574, churn 0..100.
func New(cfg integration.Config) (*Client, error) {
	f := cfg.Source.Faker
	if f == nil {
		return nil, errors.New("faker: the source has no faker settings")
	}
	if f.Devices < 1 || f.Devices > maxDevices {
		return nil, fmt.Errorf("faker.devices: %d is outside 1..%d", f.Devices, maxDevices)
	}
	if f.ChurnPercent < 0 || f.ChurnPercent > 100 {
		return nil, fmt.Errorf("faker.churnPercent: %d is outside 0..100", f.ChurnPercent)
	}
	if f.OverlapPercent < 0 || f.OverlapPercent > 100 {
		return nil, fmt.Errorf("faker.overlap.percent: %d is outside 0..100", f.OverlapPercent)
	}
	if cfg.Observer == nil {
		cfg.Observer = integration.NopObserver{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	page := int(pageLimits.Resolve(cfg.Source.PageSize))
	return &Client{cfg: cfg, n: int(f.Devices), seed: uint64(f.Seed), churn: int(f.ChurnPercent), page: page, //nolint:gosec // a seed
		overlap: population.Overlap{Seed: uint64(f.OverlapSeed), Percent: int(f.OverlapPercent)}}, nil //nolint:gosec // a seed
}

// rng is the generator of device i (or of a pass, with i < 0).
func (c *Client) rng(i int) *rand.Rand {
	return rand.New(rand.NewPCG(c.seed, uint64(int64(i)))) //nolint:gosec // deterministic on purpose
}

// start lays out the initial IPs: a seeded permutation of the first n
// addresses, so IPs are unique.
func (c *Client) start() {
	c.ips = make([]uint32, c.n)
	for i := range c.ips {
		c.ips[i] = uint32(i + 1) //nolint:gosec // < 2^20
	}
	r := c.rng(-1)
	r.Shuffle(len(c.ips), func(a, b int) { c.ips[a], c.ips[b] = c.ips[b], c.ips[a] })
}

// advance moves the primary IPs of churn percent of the devices (at least
// two when churn is set): that many distinct devices, drawn with Floyd's
// sampling, pass their IPs round, so each of them gets another's.
func (c *Client) advance() {
	k := c.n * c.churn / 100
	if c.churn > 0 {
		k = max(k, 2)
	}
	if k < 2 || c.n < 2 {
		return
	}
	r := c.rng(-2 - c.passes)
	picked := make(map[int]struct{}, k)
	order := make([]int, 0, k)
	for j := c.n - k; j < c.n; j++ {
		v := r.IntN(j + 1)
		if _, dup := picked[v]; dup {
			v = j
		}
		picked[v] = struct{}{}
		order = append(order, v)
	}
	first := c.ips[order[0]]
	for i := range len(order) - 1 {
		c.ips[order[i]] = c.ips[order[i+1]]
	}
	c.ips[order[len(order)-1]] = first
}

// macCount draws 1..200 MACs, weighted towards few: about 70% of devices
// have one, about 1% more than 50.
func macCount(r *rand.Rand) int {
	x := r.Float64()
	switch {
	case x < 0.70:
		return 1
	case x < 0.90:
		return 2 + r.IntN(3)
	case x < 0.99:
		return 5 + r.IntN(46)
	default:
		return 51 + r.IntN(150)
	}
}

var base = netip.MustParseAddr("172.16.0.0").As4()

func ip(off uint32) string {
	b := base
	b[1] |= byte(off >> 16 & 0x0f)
	b[2], b[3] = byte(off>>8&0xff), byte(off&0xff)
	return netip.AddrFrom4(b).String()
}

// device is device i with the given primary IP offset.
func (c *Client) device(i int, ipOff uint32, now string) results.DeviceUpdate {
	r := c.rng(i)
	count := macCount(r)
	d := population.DeviceOf(population.RealmFaker, c.seed, i, r.IntN)
	macs := make([]string, count)
	macs[0] = d.MAC.String()
	for k := 1; k < count; k++ {
		macs[k] = population.MAC(population.RealmFaker, c.seed, i, k).String()
	}
	addr, hostname := ip(ipOff), fmt.Sprintf("%s-%06d", d.Kind, i+1)
	meta := map[string]string{
		MetaDeviceID: strconv.Itoa(i + 1), integration.MetaIntegrationType: IntegrationType,
		integration.MetaIntegrationSourceUID: c.cfg.Source.IntegrationSourceUID,
	}
	if c.overlap.Shared(i) {
		sd := c.overlap.Device(i)
		d, macs, addr, hostname = sd.Device, []string{sd.MAC.String()}, sd.IPv4.String(), sd.Hostname
		meta["ipv6"] = sd.IPv6.String()
	}
	meta[integration.MetaAllMACs], meta[integration.MetaAllIPs] = strings.Join(macs, ","), addr
	meta["type"], meta["vendor"] = string(d.Kind), d.Vendor.Name
	yes := true
	return results.DeviceUpdate{
		IP: addr, MAC: macs[0], Hostname: hostname, Source: IntegrationType,
		Partition: c.cfg.Source.Partition, Timestamp: now, IsAvailable: &yes, Metadata: meta,
	}
}

// Fetch emits the whole inventory, one page of the source's page size at a
// time (wire/pagesize's default for faker when unset), and advances
// the churn for the next pass. A pass is always a full fetch.
func (c *Client) Fetch(ctx context.Context, emit integration.Emit) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ips == nil {
		c.start()
	} else {
		c.advance()
	}
	c.passes++
	now := c.cfg.Now().UTC().Format(time.RFC3339)
	page := make([]results.DeviceUpdate, 0, c.page)
	for i := 0; i < c.n; i += c.page {
		begin := time.Now()
		page = page[:0]
		for j := i; j < min(c.n, i+c.page); j++ {
			page = append(page, c.device(j, c.ips[j], now))
		}
		c.cfg.Observer.Page(len(page), time.Since(begin))
		if err := emit(ctx, page); err != nil {
			return fmt.Errorf("faker page at %d: %w", i, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("faker: %w", err)
		}
	}
	return nil
}
