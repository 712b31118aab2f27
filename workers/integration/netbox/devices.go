package netbox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serviceradar/sync-operator/gateway/results"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// Only the fields the client maps are decoded, so a page costs little more
// than the updates made from it.

// nbRef is a nested object with a name and a slug (site, role,
// manufacturer).
type nbRef struct {
	Name string `json:"name"`
	Slug string `json:"slug"`
}

// nbIP is a nested IP address such as primary_ip4.
type nbIP struct {
	Address string `json:"address"`
}

// nbDevice is a device of /api/dcim/devices/.
type nbDevice struct {
	ID     int64   `json:"id"`
	Name   *string `json:"name"`
	Status *struct {
		Value string `json:"value"`
	} `json:"status"`
	Site       *nbRef `json:"site"`
	Role       *nbRef `json:"role"`
	DeviceType *struct {
		Manufacturer *nbRef `json:"manufacturer"`
		Model        string `json:"model"`
	} `json:"device_type"`
	PrimaryIP4  *nbIP   `json:"primary_ip4"`
	PrimaryIP6  *nbIP   `json:"primary_ip6"`
	LastUpdated *string `json:"last_updated"`
}

func (d *nbDevice) valid() error { return validID("device", d.ID) }

// nbDeviceRef is a nested device.
type nbDeviceRef struct {
	ID int64 `json:"id"`
}

// nbInterface is an interface of /api/dcim/interfaces/. Before 4.2
// mac_address is its only MAC; from 4.2 it is the primary one and
// mac_addresses lists them all.
type nbInterface struct {
	ID           int64        `json:"id"`
	Device       *nbDeviceRef `json:"device"`
	MACAddress   *string      `json:"mac_address"`
	MACAddresses []struct {
		MACAddress string `json:"mac_address"`
	} `json:"mac_addresses"`
}

func (i *nbInterface) valid() error { return validID("interface", i.ID) }

// nbMAC is a MAC address object of /api/dcim/mac-addresses/ (4.2+).
type nbMAC struct {
	ID             int64  `json:"id"`
	MACAddress     string `json:"mac_address"`
	AssignedObject *struct {
		Device *nbDeviceRef `json:"device"`
	} `json:"assigned_object"`
}

func (m *nbMAC) valid() error { return validID("MAC address", m.ID) }

func validID(what string, id int64) error {
	if id <= 0 {
		return errors.New(what + " without a valid id")
	}
	return nil
}

// lookupMACs returns the MACs of devs by device id, in the order NetBox
// lists them. The first lookup of a run probes /api/dcim/mac-addresses/; a
// NetBox without it (before 4.2: 404), or a token not allowed to read it
// (403), sends the run to the interfaces instead.
func (r *run) lookupMACs(ctx context.Context, devs []nbDevice) (map[int64][]string, error) {
	out := make(map[int64][]string, len(devs))
	for start := 0; start < len(devs); start += macBatchSize {
		batch := devs[start:min(start+macBatchSize, len(devs))]
		ids := make(url.Values, 2)
		for i := range batch {
			ids.Add("device_id", strconv.FormatInt(batch[i].ID, 10))
			out[batch[i].ID] = nil // marks the ids asked for
		}
		ids.Set("limit", strconv.Itoa(MaxPageSize))
		if r.macs != macsFromIfaces {
			ids.Set("fields", macFields)
			err := collect(ctx, r.c, r.c.base.String()+macAddressesPath+"?"+ids.Encode(), r.macs == macsUnknown,
				func(m *nbMAC) {
					if m.AssignedObject != nil && m.AssignedObject.Device != nil {
						addMAC(out, m.AssignedObject.Device.ID, m.MACAddress)
					}
				})
			if err == nil {
				r.macs = macsFromObjects
				continue
			}
			if !errors.Is(err, errAbsent) {
				return nil, err
			}
			r.macs = macsFromIfaces
		}
		ids.Set("fields", interfaceFields)
		err := collect(ctx, r.c, r.c.base.String()+interfacesPath+"?"+ids.Encode(), false, func(it *nbInterface) {
			if it.Device == nil {
				return
			}
			if it.MACAddress != nil {
				addMAC(out, it.Device.ID, *it.MACAddress)
			}
			for _, m := range it.MACAddresses {
				addMAC(out, it.Device.ID, m.MACAddress)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// collect pages through a list from target, handing every item to add.
// target asks for pages of MaxPageSize items. probe applies to the first
// page only.
func collect[T any, P item[T]](ctx context.Context, c *Client, target string, probe bool, add func(P)) error {
	for page := 1; target != ""; page++ {
		p, err := getPage[T, P](ctx, c, target, MaxPageSize, probe && page == 1)
		if err != nil {
			if errors.Is(err, errAbsent) {
				return err
			}
			return fmt.Errorf("page %d: %w", page, err)
		}
		for i := range p.results {
			add(&p.results[i])
		}
		if len(p.results) == 0 && p.next != nil && *p.next != "" {
			return fmt.Errorf("page %d: an empty page links to a next page", page)
		}
		if target, err = c.follow(target, p.next); err != nil {
			return fmt.Errorf("after page %d: %w", page, err)
		}
	}
	return nil
}

// addMAC appends mac to the device's list unless it is empty, not asked
// for, or already there. MACs are upper case, as NetBox writes them.
func addMAC(out map[int64][]string, device int64, mac string) {
	mac = strings.ToUpper(strings.TrimSpace(mac))
	have, asked := out[device]
	if mac == "" || !asked || slices.Contains(have, mac) {
		return
	}
	out[device] = append(have, mac)
}

// update maps a NetBox device to a device update.
func (c *Client) update(d *nbDevice, macs []string, label string) results.DeviceUpdate {
	available := true
	meta := map[string]string{
		MetaDeviceID:                         strconv.FormatInt(d.ID, 10),
		integration.MetaIntegrationType:      IntegrationType,
		integration.MetaIntegrationSourceUID: c.sourceUID,
	}
	u := results.DeviceUpdate{
		Source:      IntegrationType,
		Partition:   c.partition,
		IsAvailable: &available,
		Metadata:    meta,
	}
	if label != "" {
		meta[integration.MetaQueryLabel] = label
	}
	var ips []string
	for _, ip := range []*nbIP{d.PrimaryIP4, d.PrimaryIP6} {
		if addr, ok := hostAddress(ip); ok {
			ips = append(ips, addr)
		}
	}
	if len(ips) > 0 {
		u.IP = ips[0]
		u.DeviceID = c.partition + ":" + u.IP // upstream's form; the gateway does not identify by it
		meta[integration.MetaAllIPs] = strings.Join(ips, ",")
	}
	if len(macs) > 0 {
		u.MAC = macs[0]
		meta[integration.MetaAllMACs] = strings.Join(macs, ",")
	}
	if d.Name != nil && strings.TrimSpace(*d.Name) != "" {
		u.Hostname = strings.TrimSpace(*d.Name)
		meta["name"] = u.Hostname
	}
	if d.Status != nil && d.Status.Value != "" {
		meta["status"] = d.Status.Value
	}
	if d.Site != nil && d.Site.Slug != "" {
		meta["site"] = d.Site.Slug
	}
	if d.Role != nil && d.Role.Slug != "" {
		meta["role"] = d.Role.Slug
	}
	if dt := d.DeviceType; dt != nil {
		if dt.Manufacturer != nil && dt.Manufacturer.Name != "" {
			meta["vendor"] = dt.Manufacturer.Name
		}
		if dt.Model != "" {
			meta["model"] = dt.Model
		}
	}
	u.Timestamp = c.timestamp(d.LastUpdated)
	return u
}

// hostAddress is the address of a NetBox IP ("10.0.0.1/24" gives
// "10.0.0.1").
func hostAddress(ip *nbIP) (string, bool) {
	if ip == nil {
		return "", false
	}
	raw := strings.TrimSpace(ip.Address)
	if p, err := netip.ParsePrefix(raw); err == nil {
		return p.Addr().String(), true
	}
	if a, err := netip.ParseAddr(raw); err == nil {
		return a.String(), true
	}
	return "", false
}

// timestamp is last_updated in RFC 3339 UTC, or now when NetBox has none.
func (c *Client) timestamp(lastUpdated *string) string {
	if lastUpdated != nil {
		if t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(*lastUpdated)); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
	}
	return c.now().UTC().Format(time.RFC3339Nano)
}

// idSet records the device ids a run has emitted: a bitmap in chunks of
// 65,536 ids, so 100,000 dense ids take 16 KiB and sparse ids stay cheap.
type idSet struct {
	chunks map[int64]*[1024]uint64
}

// add records id and reports whether it was new.
func (s *idSet) add(id int64) bool {
	if s.chunks == nil {
		s.chunks = map[int64]*[1024]uint64{}
	}
	key, bit := id>>16, id&0xffff
	chunk := s.chunks[key]
	if chunk == nil {
		chunk = new([1024]uint64)
		s.chunks[key] = chunk
	}
	word, mask := bit>>6, uint64(1)<<(bit&63)
	if chunk[word]&mask != 0 {
		return false
	}
	chunk[word] |= mask
	return true
}
