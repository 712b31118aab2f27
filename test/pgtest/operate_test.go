package pgtest_test

import (
	"context"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/test/pgtest"
)

// TestRoleIsDroppedWithWhatItOwns: a test's role may log in, owns what it
// creates, and is gone with it (and its grants) when the test ends.
func TestRoleIsDroppedWithWhatItOwns(t *testing.T) {
	ctx := context.Background()
	admin := pgtest.NewDatabase(t)
	var name string
	t.Run("role", func(t *testing.T) {
		role := pgtest.NewRole(t, admin)
		name = role.Name
		u, err := url.Parse(admin)
		if err != nil {
			t.Fatal(err)
		}
		db := strings.TrimPrefix(u.Path, "/")
		pgtest.Exec(t, admin, "GRANT CREATE ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO "+pgx.Identifier{name}.Sanitize())
		conn, err := pgx.Connect(ctx, role.DSN)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close(ctx) }()
		var user string
		if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != name {
			t.Fatalf("logged in as %q (%v), want %q", user, err, name)
		}
		if _, err := conn.Exec(ctx, "CREATE SCHEMA mine; CREATE TABLE mine.t (v int)"); err != nil {
			t.Fatal(err)
		}
	})
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var roles, schemas int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1), (SELECT count(*) FROM pg_namespace WHERE nspname = 'mine')", name).
		Scan(&roles, &schemas); err != nil {
		t.Fatal(err)
	}
	if roles != 0 || schemas != 0 {
		t.Fatalf("after the test: %d roles %s, %d schemas it owned; want none", roles, name, schemas)
	}
}

// TestBinMatchesTheServer: the client programs found are of the server's
// major version.
func TestBinMatchesTheServer(t *testing.T) {
	bin, err := pgtest.Bin("pg_dump")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var major string
	if err := conn.QueryRow(context.Background(), "SELECT (current_setting('server_version_num')::int / 10000)::text").Scan(&major); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), " "+major+".") {
		t.Fatalf("%s is %q, the server is PostgreSQL %s", bin, strings.TrimSpace(string(out)), major)
	}
}
