package armis

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/serviceradar/sync-operator/wire/results"
	"github.com/serviceradar/sync-operator/workers/integration"
)

// device is one search result, with only the fields the client maps. Every
// text field accepts what Armis deployments have been seen to send (a string,
// null, a number, a list, an object with a name) so that one odd field never
// fails a whole page.
type device struct {
	ID                     flexID   `json:"id"`
	IPAddress              flexText `json:"ipAddress"`
	IPv6                   flexText `json:"ipv6"`
	MacAddress             flexText `json:"macAddress"`
	Name                   flexText `json:"name"`
	Type                   flexText `json:"type"`
	Category               flexText `json:"category"`
	Manufacturer           flexText `json:"manufacturer"`
	Model                  flexText `json:"model"`
	OperatingSystem        flexText `json:"operatingSystem"`
	OperatingSystemVersion flexText `json:"operatingSystemVersion"`
	LastSeen               flexText `json:"lastSeen"`
	RiskLevel              flexText `json:"riskLevel"`
	Boundaries             flexText `json:"boundaries"`
	Tags                   flexText `json:"tags"`
	Site                   flexText `json:"site"`
}

// flexID is a device id sent as a JSON number or a numeric string; ok is
// false when it is absent or null.
type flexID struct {
	v  int64
	ok bool
}

// UnmarshalJSON reads a number or a numeric string.
func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*f = flexID{}
		return nil
	}
	b = bytes.Trim(b, `"`)
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("device id %q is not an integer", integration.Excerpt(string(b), 40))
	}
	*f = flexID{v: v, ok: true}
	return nil
}

// flexText is a field read as text: strings as they are, null as empty,
// numbers and booleans as written, lists joined with commas and objects by
// their "name" field.
type flexText string

// UnmarshalJSON reads any JSON value as text.
func (f *flexText) UnmarshalJSON(b []byte) error {
	s, err := jsonText(b)
	if err != nil {
		return err
	}
	*f = flexText(s)
	return nil
}

func jsonText(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "", nil
	}
	switch b[0] {
	case 'n':
		return "", nil
	case '"':
		if bytes.IndexByte(b, '\\') < 0 {
			return string(b[1 : len(b)-1]), nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", fmt.Errorf("decoding string: %w", err)
		}
		return s, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return "", fmt.Errorf("decoding list: %w", err)
		}
		parts := make([]string, 0, len(items))
		for _, it := range items {
			s, err := jsonText(it)
			if err != nil {
				return "", err
			}
			if s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ","), nil
	case '{':
		var obj struct {
			Name json.RawMessage `json:"name"`
		}
		if err := json.Unmarshal(b, &obj); err != nil {
			return "", fmt.Errorf("decoding object: %w", err)
		}
		if obj.Name == nil {
			return "", nil
		}
		return jsonText(obj.Name)
	default:
		return string(b), nil
	}
}

// splitList splits a multi-valued field on commas, semicolons and spaces.
func splitList(s flexText) []string {
	return strings.FieldsFunc(string(s), func(r rune) bool {
		return r == ',' || r == ';' || unicode.IsSpace(r)
	})
}

// parseTime reads an Armis timestamp: ISO 8601 with or without fractional
// seconds, with an offset, or without one meaning UTC.
func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// update maps one device to the update the gateway ingests. Devices without
// an address still go out: the gateway resolves them by armis_device_id.
func (c *Client) update(d *device, label string, now time.Time) results.DeviceUpdate {
	ips, macs := splitList(d.IPAddress), splitList(d.MacAddress)
	meta := make(map[string]string, 16)
	meta[integration.MetaIntegrationType] = IntegrationType
	meta[integration.MetaQueryLabel] = label
	if c.sourceUID != "" {
		meta[integration.MetaIntegrationSourceUID] = c.sourceUID
	}
	if d.ID.ok {
		meta[MetaDeviceID] = strconv.FormatInt(d.ID.v, 10)
	}
	if len(ips) > 0 {
		meta[integration.MetaAllIPs] = strings.Join(ips, ",")
	}
	if len(macs) > 0 {
		meta[integration.MetaAllMACs] = strings.Join(macs, ",")
	}
	for _, f := range [...]struct {
		key string
		v   flexText
	}{
		{"name", d.Name}, {"vendor", d.Manufacturer}, {"model", d.Model}, {"os", d.OperatingSystem},
		{"os_version", d.OperatingSystemVersion}, {"type", d.Type}, {"category", d.Category}, {"site", d.Site},
		{"tags", d.Tags}, {"boundaries", d.Boundaries}, {"risk_level", d.RiskLevel}, {"ipv6", d.IPv6},
	} {
		if v := strings.TrimSpace(string(f.v)); v != "" {
			meta[f.key] = v
		}
	}
	ts, available := now, true
	if t, ok := parseTime(string(d.LastSeen)); ok {
		ts = t
		// A device Armis has not seen for longer than the staleness is gone
		// from the network as far as anyone knows, though Armis keeps it.
		available = c.staleAfter <= 0 || now.Sub(t) <= c.staleAfter
	}
	u := results.DeviceUpdate{
		Hostname:    strings.TrimSpace(string(d.Name)),
		Source:      IntegrationType,
		Partition:   c.partition,
		Timestamp:   ts.UTC().Format(time.RFC3339Nano),
		IsAvailable: &available,
		Metadata:    meta,
	}
	if v6 := splitList(d.IPv6); len(ips) == 0 && len(v6) > 0 {
		// An IPv6-only device is still addressable (and sweepable): by a
		// global address when it has one rather than a link-local one.
		slices.SortStableFunc(v6, func(a, b string) int { return cmp.Compare(rankV6(a), rankV6(b)) })
		ips = v6
		meta[integration.MetaAllIPs] = strings.Join(v6, ",")
	}
	if len(ips) > 0 {
		u.IP = ips[0]
		// The upstream device_id form; the gateway identifies the device by
		// armis_device_id, never by this.
		u.DeviceID = c.partition + ":" + u.IP
	}
	if len(macs) > 0 {
		u.MAC = macs[0]
	}
	return u
}

// rankV6 orders IPv6 addresses for the primary one: global unicast first,
// then others (unique local, link-local), unparseable last.
func rankV6(s string) int {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return 2
	case a.IsGlobalUnicast() && !a.IsPrivate():
		return 0
	default:
		return 1
	}
}
