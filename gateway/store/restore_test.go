package store_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// devicesOf is every device of a tenant with its identifiers and sources,
// one line per device keyed by its canonical id.
func devicesOf(t *testing.T, s *store.Store, slug string) map[string]string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `
SELECT d.uid, concat_ws(' ', d.partition, d.tenant_id, d.ip, d.hostname, d.is_available, d.discovery_sources,
    (SELECT string_agg(i.identifier_type || '=' || i.identifier_value, ',' ORDER BY i.identifier_type, i.identifier_value)
        FROM `+store.Schema(slug)+`.device_identifiers AS i WHERE i.device_uid = d.uid),
    (SELECT string_agg(c.integration_source_uid || ':' || c.available, ',' ORDER BY c.integration_source_uid)
        FROM `+store.Schema(slug)+`.source_devices AS c WHERE c.device_uid = d.uid))
FROM `+store.Schema(slug)+`.ocsf_devices AS d`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var uid, line string
		if err := rows.Scan(&uid, &line); err != nil {
			t.Fatal(err)
		}
		out[uid] = line
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTenantSchemasSurviveDumpAndRestore takes a pg_dump of the tenant
// schemas, or of the whole database, as the README says, restores it with
// pg_restore into a fresh database as the gateway's own unprivileged role,
// and opens the store there: the same devices with the same canonical ids
// and identifiers, a segment applied before the dump and sent again after
// the restore is recognised, and new segments apply (once).
func TestTenantSchemasSurviveDumpAndRestore(t *testing.T) {
	pgDump, err := pgtest.Bin("pg_dump")
	if err != nil {
		t.Fatal(err)
	}
	pgRestore, err := pgtest.Bin("pg_restore")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		scope []string
	}{
		{"the tenant schemas", []string{"--schema=tenant_*"}},
		{"the whole database", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dumpAndRestore(t, pgDump, pgRestore, tc.scope)
		})
	}
}

func dumpAndRestore(t *testing.T, pgDump, pgRestore string, scope []string) {
	ctx := context.Background()
	srcDSN := pgtest.NewDatabase(t)
	src, err := store.Open(ctx, srcDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f := newFleet(300)
	full := f.run(t, src, "acme", acmeID, 100)
	if _, err := src.ApplySegment(ctx, oneDevice("globex", "globex-host")); err != nil {
		t.Fatal(err)
	}
	// A run still going at the time of the dump: its segment 0 is in, the
	// worker will send segment 1 (and, not knowing, segment 0 again).
	const netbox = "0b5f5f6e-0000-4c59-9d7e-00000000000a"
	running := uuid.NewString()
	segment := func(n int, complete bool, devs ...store.Device) store.Segment {
		return store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "netbox", SourceUID: netbox,
			SyncServiceID: "ss", AgentID: "w", RunID: running, Segment: n, RunComplete: complete, FullFetch: complete, Devices: devs}
	}
	pending := segment(0, false, f.device(1), f.device(2), store.Device{DeviceID: "nb-1", IP: "10.200.0.1", Hostname: "nb-1"})
	if _, err := src.ApplySegment(ctx, pending); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{"acme": devicesOf(t, src, "acme"), "globex": devicesOf(t, src, "globex")}

	dump := filepath.Join(t.TempDir(), "sync.dump")
	dumpArgs := append([]string{"--format=custom", "--file=" + dump, "--dbname=" + srcDSN}, scope...)
	if out, err := exec.Command(pgDump, dumpArgs...).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	_, role := restrictedRole(t, documentedPrivileges)
	if out, err := exec.Command(pgRestore, "--no-owner", "--no-privileges", "--exit-on-error", "--dbname="+role.DSN, dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore as the gateway's role: %v\n%s", err, out)
	}

	dst, err := store.Open(ctx, role.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for slug, devices := range want {
		if got := devicesOf(t, dst, slug); !reflect.DeepEqual(got, devices) {
			t.Fatalf("%s after the restore: %d devices, want the %d dumped:\n got %v\nwant %v", slug, len(got), len(devices), got, devices)
		}
	}
	again, err := dst.ApplySegment(ctx, pending)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate {
		t.Fatal("a segment applied before the dump was applied again after the restore")
	}
	for seg := range 3 {
		if again, err := dst.ApplySegment(ctx, store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "faker",
			SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: full, Segment: seg}); err != nil || !again.Duplicate {
			t.Fatalf("segment %d of the finished run sent again: %+v, %v; want a duplicate", seg, again, err)
		}
	}
	// The run goes on and finishes on the restored database.
	last := segment(1, true, f.device(3))
	applied, err := dst.ApplySegment(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	if applied.Duplicate || applied.Run == nil || applied.Run.Devices != 4 {
		t.Fatalf("the run's last segment after the restore: %+v (run %+v), want it applied and the run of 4 updates finished", applied, applied.Run)
	}
	if again, err := dst.ApplySegment(ctx, last); err != nil || !again.Duplicate {
		t.Fatalf("the last segment sent again: %+v, %v; want a duplicate", again, err)
	}
	after := devicesOf(t, dst, "acme")
	if len(after) != len(want["acme"]) {
		t.Fatalf("%d devices after the run, want the %d restored (device 3 is one of them)", len(after), len(want["acme"]))
	}
	var owner string
	if err := dst.Pool().QueryRow(ctx, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'tenant_acme'").Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != role.Name {
		t.Fatalf("restored schema owned by %s, want the gateway's role %s", owner, role.Name)
	}
}
