package results_test

import (
	"testing"

	"github.com/serviceradar/sync-operator/wire/results"
)

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"00:1b:44:11:3a:b7": "001B44113AB7",
		"00-1B-44-11-3A-B7": "001B44113AB7",
		"001b.4411.3ab7":    "001B44113AB7",
		"001B44113AB7":      "001B44113AB7",
		"00:00:00:00:00:00": "",
		"ff:ff:ff:ff:ff:ff": "",
		"01:00:5e:00:00:01": "", // multicast
		"00:1b:44:11:3a":    "",
		"zz:1b:44:11:3a:b7": "",
		"":                  "",
	} {
		if got := results.NormalizeMAC(in); got != want {
			t.Errorf("NormalizeMAC(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLocallyAdministered(t *testing.T) {
	for mac, want := range map[string]bool{
		"02005E100001": true,  // the locally administered bit set
		"001B44113AB7": false, // a vendor's (universally administered) MAC
		"0A0000000001": true,
		"not-a-mac":    false,
		"02005E":       false,
	} {
		if got := results.LocallyAdministered(mac); got != want {
			t.Errorf("LocallyAdministered(%q) = %v, want %v", mac, got, want)
		}
	}
}
