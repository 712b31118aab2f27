package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// seedSlug is the tenant whose schema, written by the current gateway,
// holds the data that each upgrade test starts from.
const seedSlug = "seed"

// seeded is what the seed holds: an open run of source S1 (two segments
// applied, devices 0-17 reported) whose devices 18 and 19 are not reported.
type seeded struct {
	fleet   *fleet
	openRun string
}

const (
	seedS1 = "0b5f5f6e-8f7d-4c59-9d7e-3c3a3c0f0101"
	seedS2 = "0b5f5f6e-8f7d-4c59-9d7e-3c3a3c0f0102"
	seedS3 = "0b5f5f6e-8f7d-4c59-9d7e-3c3a3c0f0103"
)

func seedSegment(slug, integration, source, runID string, n int, complete, full bool, devs []store.Device) store.Segment {
	return store.Segment{TenantID: acmeID, TenantSlug: slug, Partition: "default", Integration: integration, SourceUID: source,
		SyncServiceID: "ss", AgentID: "w", RunID: runID, Segment: n, RunComplete: complete, FullFetch: full, Devices: devs}
}

// seed writes, through the store, what a tenant holds after a while: a
// source's complete run, two sources' devices merged into one (an audit
// row), an agent, and a run still open.
func seed(t *testing.T, s *store.Store) seeded {
	t.Helper()
	ctx := context.Background()
	f := newFleet(20)
	apply := func(seg store.Segment) {
		t.Helper()
		if _, err := s.ApplySegment(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}
	run := uuid.NewString()
	apply(seedSegment(seedSlug, "faker", seedS1, run, 0, false, false, f.devices(0, 10)))
	apply(seedSegment(seedSlug, "faker", seedS1, run, 1, true, true, f.devices(10, 20)))
	apply(seedSegment(seedSlug, "armis", seedS2, uuid.NewString(), 0, true, false, []store.Device{{DeviceID: "7", Hostname: "plc"}}))
	apply(seedSegment(seedSlug, "netbox", seedS3, uuid.NewString(), 0, true, false,
		[]store.Device{{DeviceID: "n1", MACs: []string{"00:1b:44:11:3a:b7"}, Metadata: map[string]string{"all_ips": "10.9.0.1, 10.9.0.2"}}}))
	apply(seedSegment(seedSlug, "armis", seedS2, uuid.NewString(), 0, true, false, []store.Device{{DeviceID: "7", MACs: []string{"00:1b:44:11:3a:b7"}}}))
	if err := s.RecordAgent(ctx, seedSlug, store.Agent{Partition: "default", AgentID: "agent-1", Version: "1.0", LastSeen: time.Now()}); err != nil {
		t.Fatal(err)
	}
	open := uuid.NewString()
	apply(seedSegment(seedSlug, "faker", seedS1, open, 0, false, false, f.devices(0, 10)))
	apply(seedSegment(seedSlug, "faker", seedS1, open, 1, false, false, f.devices(10, 18)))
	var merges int
	if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM tenant_seed.merge_audit").Scan(&merges); err != nil || merges != 1 {
		t.Fatalf("seed: %d merges, want 1 (%v)", merges, err)
	}
	return seeded{fleet: f, openRun: open}
}

// columns are a table's stored (not generated) columns in a schema, in order; none when it has no such table.
func columns(t *testing.T, conn *pgx.Conn, schema, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT column_name::text FROM information_schema.columns
WHERE table_schema = $1 AND table_name = $2 AND is_generated = 'NEVER' ORDER BY ordinal_position`, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

// seedTables are the tables the seed copies, parents before what points at them.
var seedTables = []string{"ocsf_devices", "device_identifiers", "source_devices", "merge_audit", "sync_runs", "applied_segments",
	"partition_generations", "agents"}

// shared are the columns of a table that both schemas have.
func shared(t *testing.T, conn *pgx.Conn, from, to, table string) []string {
	t.Helper()
	have := columns(t, conn, to, table)
	var out []string
	for _, c := range columns(t, conn, from, table) {
		if slices.Contains(have, c) {
			out = append(out, c)
		}
	}
	return out
}

// copySeed copies the seed's rows into a schema at an older version: the
// tables and columns that version has (what the gateway of that version
// would have written).
func copySeed(t *testing.T, conn *pgx.Conn, to string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	from := store.Schema(seedSlug)
	kept := map[string][]string{}
	for _, table := range seedTables {
		cols := shared(t, conn, from, to, table)
		if len(cols) == 0 {
			continue
		}
		list := pgx.Identifier{cols[0]}.Sanitize()
		for _, c := range cols[1:] {
			list += ", " + pgx.Identifier{c}.Sanitize()
		}
		q := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s", pgx.Identifier{to, table}.Sanitize(), list, list, pgx.Identifier{from, table}.Sanitize())
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("copying %s: %v", table, err)
		}
		kept[table] = cols
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT setval(pg_get_serial_sequence('%s.merge_audit', 'id'), max(id)) FROM %s.merge_audit", to, to)); err != nil {
		t.Fatal(err)
	}
	return kept
}

// dumpTables reads the given columns of each table as sorted JSON rows.
func dumpTables(t *testing.T, conn *pgx.Conn, schema string, tables map[string][]string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for table, cols := range tables {
		list := pgx.Identifier{cols[0]}.Sanitize()
		for _, c := range cols[1:] {
			list += ", " + pgx.Identifier{c}.Sanitize()
		}
		rows, err := conn.Query(context.Background(), fmt.Sprintf("SELECT to_jsonb(x)::text FROM (SELECT %s FROM %s) x ORDER BY 1", list,
			pgx.Identifier{schema, table}.Sanitize()))
		if err != nil {
			t.Fatal(err)
		}
		if out[table], err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func adminConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// appliedVersions are a schema's recorded migrations, in order.
func appliedVersions(t *testing.T, conn *pgx.Conn, schema string) []int {
	t.Helper()
	rows, err := conn.Query(context.Background(), fmt.Sprintf("SELECT version FROM %s.schema_migrations ORDER BY version", pgx.Identifier{schema}.Sanitize()))
	if err != nil {
		t.Fatal(err)
	}
	v, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// An upgrade from every earlier schema version keeps what the tenant held:
// a schema migrated to version N by the gateway of that version, holding
// what that gateway wrote (devices, identifiers, claims, a merge, runs, the
// segments of a run still open), is migrated by the current gateway; every
// row is still there, segments sent before the upgrade are recognised, the
// open run finishes retracting exactly what it did not report, and new
// segments resolve to the same devices.
func TestUpgradeFromEveryMigration(t *testing.T) {
	ctx := context.Background()
	versions, err := store.MigrationVersions()
	if err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewDatabase(t)
	seedStore := openDSN(t, dsn)
	sd := seed(t, seedStore)
	conn := adminConn(t, dsn)
	for _, n := range versions {
		t.Run(fmt.Sprintf("from version %d", n), func(t *testing.T) {
			slug := fmt.Sprintf("v%d", n)
			schema := store.Schema(slug)
			old := openDSN(t, dsn)
			store.StopMigrationsAt(old, n)
			if err := old.EnsureTenant(ctx, slug); err != nil {
				t.Fatal(err)
			}
			old.Close()
			if got := appliedVersions(t, conn, schema); !slices.Equal(got, versions[:slices.Index(versions, n)+1]) {
				t.Fatalf("the gateway of version %d left versions %v", n, got)
			}
			tables := copySeed(t, conn, schema)
			before := dumpTables(t, conn, schema, tables)
			devices := len(before["ocsf_devices"])

			s := openDSN(t, dsn) // the current gateway
			if err := s.EnsureTenant(ctx, slug); err != nil {
				t.Fatalf("upgrading from version %d: %v", n, err)
			}
			if got := appliedVersions(t, conn, schema); !slices.Equal(got, versions) {
				t.Errorf("versions %v after the upgrade, want %v", got, versions)
			}
			after := dumpTables(t, conn, schema, tables)
			for table := range tables {
				if !slices.Equal(before[table], after[table]) {
					t.Errorf("%s changed in the upgrade:\nbefore %v\nafter  %v", table, before[table], after[table])
				}
			}

			apply := func(seg store.Segment) store.Applied {
				t.Helper()
				out, err := s.ApplySegment(ctx, seg)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			// A segment sent before the upgrade is recognised.
			if got := apply(seedSegment(slug, "faker", seedS1, sd.openRun, 1, false, false, sd.fleet.devices(10, 18))); !got.Duplicate {
				t.Errorf("a segment applied before the upgrade was applied again: %+v", got)
			}
			// The open run ends: it reported devices 0-18, so 19 is retracted.
			got := apply(seedSegment(slug, "faker", seedS1, sd.openRun, 2, true, true, sd.fleet.devices(18, 19)))
			if got.Run == nil || got.Run.Retracted != 1 || got.Run.Available != 19 || got.Devices != 1 {
				t.Errorf("the open run ended with %+v (%d devices), want 1 device, 1 retracted, 19 available", got.Run, got.Devices)
			}
			// The merged device is found by either identifier, and by its other address.
			apply(seedSegment(slug, "armis", seedS2, uuid.NewString(), 0, true, false, []store.Device{{DeviceID: "7", Hostname: "plc-2"}}))
			apply(seedSegment(slug, "netbox", seedS3, uuid.NewString(), 0, true, false, []store.Device{{DeviceID: "n1", OS: "fw 3"}}))
			apply(seedSegment(slug, "faker", uuid.NewString(), uuid.NewString(), 0, true, false, []store.Device{{IP: "10.9.0.2", Name: "by-address"}}))
			if got := count(t, s, slug, ""); got != devices {
				t.Errorf("%d devices after new segments, want the %d there were", got, devices)
			}
			if got := count(t, s, slug, "hostname = 'plc-2' AND os = 'fw 3' AND name = 'by-address'"); got != 1 {
				t.Errorf("the merged device did not take the new segments' fields: %d devices have them", got)
			}
		})
	}
}

// Replicas that start together migrate a schema once: each migration is
// applied and recorded once, whichever replica applies it, and no replica
// fails.
func TestReplicasMigrateOnce(t *testing.T) {
	ctx := context.Background()
	versions, err := store.MigrationVersions()
	if err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewDatabase(t)
	seed(t, openDSN(t, dsn))
	conn := adminConn(t, dsn)
	old := openDSN(t, dsn)
	store.StopMigrationsAt(old, versions[0])
	if err := old.EnsureTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	tables := copySeed(t, conn, "tenant_acme")
	before := dumpTables(t, conn, "tenant_acme", tables)

	const replicas = 4
	stores := make([]*store.Store, replicas)
	for i := range stores {
		stores[i] = openDSN(t, dsn)
	}
	errs := make([]error, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.EnsureTenant(ctx, "acme")
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	if got := appliedVersions(t, conn, "tenant_acme"); !slices.Equal(got, versions) {
		t.Errorf("recorded migrations %v, want each of %v once", got, versions)
	}
	after := dumpTables(t, conn, "tenant_acme", tables)
	for table := range tables {
		if !slices.Equal(before[table], after[table]) {
			t.Errorf("%s changed in the migration", table)
		}
	}
	// Each replica now writes to the migrated schema.
	for i, s := range stores {
		if _, err := s.ApplySegment(ctx, store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "armis",
			SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), Devices: []store.Device{{DeviceID: fmt.Sprint(100 + i)}}}); err != nil {
			t.Errorf("replica %d after the migration: %v", i, err)
		}
	}
}
