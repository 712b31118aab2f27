package results_test

import (
	"fmt"
	"testing"

	"github.com/serviceradar/sync-operator/wire/results"
)

// BenchmarkParse decodes a 5,000-device segment message (the gateway's
// per-segment decode); run with -benchmem.
func BenchmarkParse(b *testing.B) {
	yes := true
	m := results.Message{Meta: &results.Meta{SyncRunID: "r", IntegrationSourceUID: "u"}}
	for i := range 5000 {
		m.Devices = append(m.Devices, results.DeviceUpdate{IP: fmt.Sprintf("172.16.%d.%d", i/256, i%256), MAC: "00:1b:44:11:3a:b7",
			Hostname: fmt.Sprintf("dev-%d", i), Source: "faker", IsAvailable: &yes, Timestamp: "2026-11-27T05:00:00Z",
			Metadata: map[string]string{"faker_device_id": fmt.Sprint(i), "integration_type": "faker", "integration_source_uid": "u",
				"all_macs": "00:1b:44:11:3a:b7,00:1b:44:11:3a:b8", "vendor": "Acme"}})
	}
	raw, err := results.Encode(m)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := results.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}
