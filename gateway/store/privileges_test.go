package store_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// databaseOf is the database a URL DSN names.
func databaseOf(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// restrictedRole makes a role that may do on a fresh database only what
// the privileges given allow: the database's default grants to PUBLIC
// (CONNECT, TEMPORARY) and public's CREATE are revoked first, as a
// locked-down server has them. It returns the administrative DSN of the
// database and the role.
func restrictedRole(t *testing.T, privileges string) (string, pgtest.Role) {
	t.Helper()
	admin := pgtest.NewDatabase(t)
	role := pgtest.NewRole(t, admin)
	db, r := pgx.Identifier{databaseOf(t, admin)}.Sanitize(), pgx.Identifier{role.Name}.Sanitize()
	pgtest.Exec(t, admin, "REVOKE ALL ON DATABASE "+db+" FROM PUBLIC", "REVOKE ALL ON SCHEMA public FROM PUBLIC")
	if privileges != "" {
		pgtest.Exec(t, admin, "GRANT "+privileges+" ON DATABASE "+db+" TO "+r)
	}
	return admin, role
}

// documentedPrivileges are what the README tells operators to grant the
// gateway's role (issue 21): nothing else, no superuser, no ownership of
// the database.
const documentedPrivileges = "CONNECT, CREATE, TEMPORARY"

// TestGatewayRunsWithOnlyTheDocumentedPrivileges runs the store's whole life
// cycle as a role that has only the documented privileges on its database:
// a tenant's schema is created and migrated, runs apply and retract, sweeps
// and agents are recorded, and the schema is dropped.
func TestGatewayRunsWithOnlyTheDocumentedPrivileges(t *testing.T) {
	ctx := context.Background()
	admin, role := restrictedRole(t, documentedPrivileges)
	var super, createDB, createRole bool
	if err := mustConn(t, admin).QueryRow(ctx, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1", role.Name).
		Scan(&super, &createDB, &createRole); err != nil {
		t.Fatal(err)
	}
	if super || createDB || createRole {
		t.Fatalf("role %s is not plain: superuser %v, createdb %v, createrole %v", role.Name, super, createDB, createRole)
	}

	s, err := store.Open(ctx, role.DSN, store.WithCacheEntries(0))
	if err != nil {
		t.Fatalf("opening the store as a role with %s: %v", documentedPrivileges, err)
	}
	defer s.Close()
	if err := s.EnsureTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	var owner string
	if err := s.Pool().QueryRow(ctx, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'tenant_acme'").Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != role.Name {
		t.Fatalf("schema tenant_acme is owned by %s, want the gateway's role %s", owner, role.Name)
	}

	const armis = "0b5f5f6e-0000-4c59-9d7e-00000000000b"
	yes := true
	dev := func(n, ip string) store.Device {
		return store.Device{DeviceID: n, IP: ip, Hostname: "h-" + n, IsAvailable: &yes, MACs: []string{"00:1b:44:11:3a:" + n},
			Metadata: map[string]string{"integration_type": "armis", "armis_device_id": n}}
	}
	seg := func(complete bool, devs ...store.Device) store.Segment {
		return store.Segment{TenantID: acmeID, TenantSlug: "acme", Partition: "default", Integration: "armis", SourceUID: armis,
			SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(), RunComplete: complete, FullFetch: complete, Devices: devs}
	}
	first := seg(true, dev("01", "10.9.0.1"), dev("02", "10.9.0.2"), dev("03", "10.9.0.3"))
	if _, err := s.ApplySegment(ctx, first); err != nil {
		t.Fatal(err)
	}
	if again, err := s.ApplySegment(ctx, first); err != nil || !again.Duplicate {
		t.Fatalf("segment sent again: %+v, %v; want a duplicate", again, err)
	}
	// A complete run without 03 retracts it.
	applied, err := s.ApplySegment(ctx, seg(true, dev("01", "10.9.0.1"), dev("02", "10.9.0.2")))
	if err != nil {
		t.Fatal(err)
	}
	if applied.Run == nil || applied.Run.Retracted != 1 {
		t.Fatalf("second run %+v, want one device retracted", applied.Run)
	}
	targets, err := s.SweepTargets(ctx, "acme", "default", []string{armis})
	if err != nil || len(targets) != 2 {
		t.Fatalf("sweep targets %v, %v; want 2", targets, err)
	}
	if sw, err := s.ApplySweep(ctx, "acme", "default", []store.Swept{{IP: "10.9.0.1", Available: false}}, time.Now()); err != nil || sw.Matched != 1 {
		t.Fatalf("sweep %+v, %v; want one match", sw, err)
	}
	if err := s.RecordAgent(ctx, "acme", store.Agent{Partition: "default", AgentID: "agent-1", Version: "1.0", LastSeen: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if agents, err := s.Agents(ctx, "acme"); err != nil || len(agents) != 1 {
		t.Fatalf("agents %v, %v; want one", agents, err)
	}
	if n, err := s.RetractSource(ctx, "acme", "default", armis); err != nil || n != 2 {
		t.Fatalf("retracting the source: %d, %v; want 2", n, err)
	}
	if err := s.DropTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if schemaExists(t, s, "tenant_acme") {
		t.Fatal("DropTenant left the schema")
	}
}

func mustConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// TestMissingPrivilegeIsNamed takes away each privilege the gateway needs
// and checks that the error names it and the statement that grants it: at
// Open, or when it is taken away from a running gateway.
func TestMissingPrivilegeIsNamed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		privileges string
		// revoke is taken away after Open, as ROLE and DB placeholders.
		revoke string
		want   string
	}{
		{name: "no CONNECT", privileges: "CREATE, TEMPORARY", want: "GRANT CONNECT ON DATABASE"},
		{name: "no CREATE", privileges: "CONNECT, TEMPORARY", want: "GRANT CREATE ON DATABASE"},
		{name: "no TEMPORARY", privileges: "CONNECT, CREATE", want: "GRANT TEMPORARY ON DATABASE"},
		{name: "CREATE revoked while running", privileges: documentedPrivileges, revoke: "CREATE", want: "GRANT CREATE ON DATABASE"},
		{name: "TEMPORARY revoked while running", privileges: documentedPrivileges, revoke: "TEMPORARY", want: "GRANT TEMPORARY ON DATABASE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin, role := restrictedRole(t, tc.privileges)
			db, r := pgx.Identifier{databaseOf(t, admin)}.Sanitize(), pgx.Identifier{role.Name}.Sanitize()
			s, err := store.Open(ctx, role.DSN)
			if tc.revoke != "" {
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				pgtest.Exec(t, admin, "REVOKE "+tc.revoke+" ON DATABASE "+db+" FROM "+r)
				_, err = s.ApplySegment(ctx, oneDevice("acme", "host"))
			} else if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, store.ErrPrivilege) {
				t.Fatalf("error %v is not ErrPrivilege", err)
			}
			if want := tc.want + " " + db + " TO " + r; !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
			t.Log(err)
		})
	}
}

// reassignTenantSchemas is the README's statement that hands every tenant
// schema, and everything in it, to the gateway's role (ROLE): for a
// gateway that ran as another role before.
const reassignTenantSchemas = `DO $$
DECLARE s text; t text;
BEGIN
  FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\_%' LOOP
    EXECUTE format('ALTER SCHEMA %I OWNER TO ROLE', s);
    FOR t IN SELECT relname FROM pg_class WHERE relnamespace = s::regnamespace AND relkind IN ('r', 'p') LOOP
      EXECUTE format('ALTER TABLE %I.%I OWNER TO ROLE', s, t);
    END LOOP;
  END LOOP;
END $$`

// TestSchemaOfAnotherRoleIsNamed: a tenant schema created while the
// gateway ran as another role (the superuser) is refused with an error
// naming that role and what to run; after the README's statement the
// gateway's role serves it, its devices kept.
func TestSchemaOfAnotherRoleIsNamed(t *testing.T) {
	ctx := context.Background()
	admin, role := restrictedRole(t, documentedPrivileges)
	before, err := store.Open(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := before.ApplySegment(ctx, oneDevice("acme", "old-host")); err != nil {
		t.Fatal(err)
	}
	var superuser string
	if err := before.Pool().QueryRow(ctx, "SELECT current_user").Scan(&superuser); err != nil {
		t.Fatal(err)
	}
	before.Close()

	s, err := store.Open(ctx, role.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.ApplySegment(ctx, oneDevice("acme", "new-host"))
	if !errors.Is(err, store.ErrPrivilege) {
		t.Fatalf("applying to a schema of another role: %v, want ErrPrivilege", err)
	}
	r := pgx.Identifier{role.Name}.Sanitize()
	for _, want := range []string{`does not own schema "tenant_acme"`, "role " + pgx.Identifier{superuser}.Sanitize() + " owns",
		`ALTER SCHEMA "tenant_acme" OWNER TO ` + r} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	t.Log(err)
	pgtest.Exec(t, admin, strings.ReplaceAll(reassignTenantSchemas, "ROLE", r))
	// The refusal was not cached: the next segment finds the schema its own.
	if _, err := s.ApplySegment(ctx, oneDevice("acme", "new-host")); err != nil {
		t.Fatalf("after handing the schema over: %v", err)
	}
	if got := count(t, s, "acme", ""); got != 1 {
		t.Fatalf("%d devices, want the one device, kept", got)
	}
	if err := s.DropTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
}
