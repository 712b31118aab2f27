package results

import (
	"encoding/hex"
	"strings"
)

// NormalizeMAC returns a MAC in upper case without separators, or "" when s
// is not usable as a device's MAC: wrong length, not hex, all zeros,
// broadcast, multicast, or a well-known virtual MAC (VirtualMAC) that
// first-hop redundancy routers share. So a virtual MAC is never an
// identifier of any source's device, nor a device's MAC. Workers choose the
// MAC they report by it and the gateway's DIRE identifies devices by it, so
// the two agree on which MACs count.
func NormalizeMAC(s string) string {
	// Called for every MAC of every update: one pass, one allocation.
	var m [12]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' || c == '-' || c == '.' || c == ' ':
			continue
		case c >= '0' && c <= '9', c >= 'A' && c <= 'F':
		case c >= 'a' && c <= 'f':
			c -= 'a' - 'A'
		default:
			return "" // not hex (any non-ASCII byte lands here too)
		}
		if n == len(m) {
			return ""
		}
		m[n] = c
		n++
	}
	if n != len(m) {
		return ""
	}
	out := string(m[:])
	if out == "000000000000" || out == "FFFFFFFFFFFF" || hexValue(m[1])&0x01 != 0 || VirtualMAC(out) {
		return ""
	}
	return out
}

// virtualPrefixes are the well-known virtual MAC ranges, as normalized
// prefixes: every router of a first-hop redundancy group answers with the
// group's MAC, so it tells no device from another (an HSRP pair would
// merge into one device by it).
var virtualPrefixes = []string{
	"00000C07AC",   // HSRP version 1, 00:00:0C:07:AC:<group> (Cisco)
	"00000C9FF",    // HSRP version 2, 00:00:0C:9F:F<group> (Cisco)
	"000573A00",    // HSRP for IPv6, 00:05:73:A0:0<group> (Cisco)
	"00005E0001",   // VRRP for IPv4 (RFC 5798), also CARP and Juniper, Arista, Nokia VRRP
	"00005E0002",   // VRRP for IPv6 (RFC 5798)
	"0007B40",      // GLBP, 00:07:B4:0<group>:<forwarder> (Cisco)
	"002304EEBE",   // vPC peer-gateway virtual MAC, 00:23:04:EE:BE:<domain> (Cisco Nexus)
	"001C73000099", // the VARP virtual router MAC of Arista's documentation
}

// VirtualMAC reports whether a normalized MAC is a well-known virtual MAC
// of first-hop redundancy: HSRP v1, v2 and IPv6, VRRP (IPv4 and IPv6, also
// CARP's), GLBP, Cisco vPC's peer-gateway MAC and the VARP MAC
// 00:1C:73:00:00:99 that Arista's documentation configures. Such a MAC identifies no device.
func VirtualMAC(mac string) bool {
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(mac, p) {
			return true
		}
	}
	return false
}

// hexValue is the value of an upper-case hex digit.
func hexValue(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// LocallyAdministered reports whether a normalized MAC has the locally
// administered bit (the second-least-significant bit of the first octet).
func LocallyAdministered(mac string) bool {
	raw, err := hex.DecodeString(mac)
	return err == nil && len(raw) == 6 && raw[0]&0x02 != 0
}
