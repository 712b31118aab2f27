package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/test"
)

// StartServer starts a PostgreSQL server of its own for one test, with
// hack/postgres.sh and the extra environment given (e.g. PG_TLS_CERT and
// PG_TLS_KEY for TLS), and returns its administrative DSN. The server is
// stopped and its folder removed when the test ends.
func StartServer(t testing.TB, env ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sync-pgtest-")
	if err != nil {
		t.Fatalf("pgtest: creating PostgreSQL folder: %v", err)
	}
	script := filepath.Join(test.RepoRoot(), "hack", "postgres.sh")
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("pgtest: stopping PostgreSQL in %s: %v: %s", dir, err, out)
		}
	})
	cmd := exec.Command(script, "start", dir)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pgtest: starting PostgreSQL with %s: %v\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Bin returns the path of a PostgreSQL program (pg_dump, pg_restore, psql)
// of the test server's own installation, so that its version matches the
// server's: /usr/lib/postgresql/<major>/bin, as hack/postgres.sh uses, or
// else the program on PATH.
func Bin(name string) (string, error) {
	admin, err := ServerDSN()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connecting to the test server: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return "", fmt.Errorf("reading the server's version: %w", err)
	}
	path := filepath.Join("/usr/lib/postgresql", fmt.Sprint(version/10000), "bin", name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	path, err = exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("no %s for PostgreSQL %d: %w", name, version/10000, err)
	}
	return path, nil
}

// Role is a login role made for one test.
type Role struct {
	// Name is the role's name.
	Name string
	// DSN is the DSN it was made from, logging in as this role instead.
	DSN string
}

// NewRole creates a role on the server of dsn (an administrative DSN) that
// may log in with a random password and has no other privilege: what it
// may do, the test grants. When the test ends, everything it owns or was
// granted in any database is dropped, then the role.
func NewRole(t testing.TB, dsn string) Role {
	t.Helper()
	ctx := context.Background()
	name, password := "test_role_"+randomHex(6), randomHex(16)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("pgtest: parsing DSN: %v", err)
	}
	if err := adminExec(ctx, dsn, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", pgx.Identifier{name}.Sanitize(), password)); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := dropRole(ctx, dsn, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	u.User = url.UserPassword(name, password)
	return Role{Name: name, DSN: u.String()}
}

// dropRole drops what a role owns or was granted in every database, then
// the role.
func dropRole(ctx context.Context, dsn, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to the test server: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	// Objects in a database depend on the role there; grants on databases
	// are shared (dbid 0) and go with a DROP OWNED in any database.
	rows, err := conn.Query(ctx, `
SELECT DISTINCT d.datname FROM pg_shdepend AS s JOIN pg_database AS d ON d.oid = s.dbid
WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)`, name)
	if err != nil {
		return fmt.Errorf("finding what role %s owns: %w", name, err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("finding what role %s owns: %w", name, err)
	}
	role := pgx.Identifier{name}.Sanitize()
	var errs []error
	for _, db := range dbs {
		other, err := withDatabase(dsn, db)
		if err == nil {
			err = adminExec(ctx, other, "DROP OWNED BY "+role+" CASCADE")
		}
		errs = append(errs, err)
	}
	if _, err := conn.Exec(ctx, "DROP OWNED BY "+role+" CASCADE"); err != nil {
		errs = append(errs, fmt.Errorf("DROP OWNED BY %s: %w", role, err))
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+role); err != nil {
		errs = append(errs, fmt.Errorf("DROP ROLE %s: %w", role, err))
	}
	return errors.Join(errs...)
}

// Exec runs SQL statements on dsn (typically the administrative DSN of a
// test's database), failing the test when one fails.
func Exec(t testing.TB, dsn string, statements ...string) {
	t.Helper()
	for _, sql := range statements {
		if err := adminExec(context.Background(), dsn, sql); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
}

func adminExec(ctx context.Context, dsn, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to the test server: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}
