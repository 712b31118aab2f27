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
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
	admin, err := ServerDSN()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := "test_" + randomHex(8)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connecting to the test server: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("pgtest: connecting to drop %s: %v", name, err)
			return
		}
		defer func() { _ = conn.Close(context.Background()) }()
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
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
