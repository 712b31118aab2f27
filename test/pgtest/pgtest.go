// Package pgtest gives tests their own database on a real, throwaway
// PostgreSQL server started by hack/postgres.sh.
//
// `make test` starts one server for the whole run and exports its DSN in
// SYNC_TEST_POSTGRES_DSN; without it, the first use in a test process starts a
// server for that process (stopped by Stop, typically from TestMain).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/serviceradar/sync-operator/test"
)

// EnvDSN names the environment variable holding the DSN of a running server
// on which tests may create and drop databases.
const EnvDSN = "SYNC_TEST_POSTGRES_DSN"

var (
	mu       sync.Mutex
	adminDSN string
	ownDir   string // set when this process started its own server
)

// ServerDSN returns the administrative DSN of the test server, starting one
// with hack/postgres.sh when EnvDSN is unset.
func ServerDSN() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if adminDSN != "" {
		return adminDSN, nil
	}
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		adminDSN = dsn
		return dsn, nil
	}
	dir, err := os.MkdirTemp("", "sync-pgtest-")
	if err != nil {
		return "", fmt.Errorf("creating PostgreSQL folder: %w", err)
	}
	script := filepath.Join(test.RepoRoot(), "hack", "postgres.sh")
	cmd := exec.Command(script, "start", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("starting PostgreSQL with %s: %w", script, err)
	}
	ownDir = dir
	adminDSN = strings.TrimSpace(string(out))
	return adminDSN, nil
}

// Stop stops a server that this process started; a shared server is left alone.
func Stop() error {
	mu.Lock()
	defer mu.Unlock()
	if ownDir == "" {
		return nil
	}
	script := filepath.Join(test.RepoRoot(), "hack", "postgres.sh")
	if out, err := exec.Command(script, "stop", ownDir).CombinedOutput(); err != nil {
		return fmt.Errorf("stopping PostgreSQL in %s: %w: %s", ownDir, err, out)
	}
	ownDir, adminDSN = "", ""
	return nil
}

// NewDatabase creates an empty database for one test and returns its DSN. The
// database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	dsn, drop, err := CreateDatabase(context.Background())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return dsn
}

// CreateDatabase creates an empty database on the test server (started when
// needed) for programs without a testing.TB, and returns its DSN and a
// function that drops it.
func CreateDatabase(ctx context.Context) (string, func() error, error) {
	admin, err := ServerDSN()
	if err != nil {
		return "", nil, err
	}
	name := "test_" + randomHex(8)
	exec := func(ctx context.Context, sql string) error { return adminExec(ctx, admin, sql) }
	if err := exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, err
	}
	drop := func() error {
		return exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	dsn, err := withDatabase(admin, name)
	if err != nil {
		return "", nil, errors.Join(err, drop())
	}
	return dsn, drop, nil
}

func withDatabase(dsn, db string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("parsing test server DSN: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run runs a package's tests (from TestMain) and stops the server this
// process started, if any; its result is the exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if err := Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}
