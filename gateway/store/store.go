// Package store is the gateway's PostgreSQL: one schema per tenant
// (tenant_<slug>), created on first use with versioned migrations embedded
// in the binary, and the transactions that apply a segment of device
// updates, retract devices and read sweep targets.
package store

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded migration.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with its version number", e.Name())
		}
		data, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(data)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]`)

// Schema is the schema of a tenant: tenant_<slug>, lower-cased, characters
// outside [a-z0-9_] turned to _.
func Schema(slug string) string {
	return "tenant_" + unsafeChars.ReplaceAllString(strings.ToLower(slug), "_")
}

// Store is safe for concurrent use, and by several gateway replicas at once.
type Store struct {
	pool       *pgxpool.Pool
	migrations []migration
	lastSeen   time.Duration
	cache      *cache

	mu    sync.Mutex
	ready map[string]bool
}

// DefaultLastSeenResolution is how stale a device's last_seen may get before
// a report that changes nothing else rewrites it.
const DefaultLastSeenResolution = time.Minute

// Option configures a Store.
type Option func(*options)

type options struct{ cacheEntries int }

// WithCacheEntries bounds the in-memory device cache (see cache) to n
// identifiers and device states across all tenants; 0 disables it. The
// default is DefaultCacheEntries.
func WithCacheEntries(n int) Option { return func(o *options) { o.cacheEntries = n } }

// Open connects to PostgreSQL.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{cacheEntries: DefaultCacheEntries}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing the PostgreSQL DSN: %w", err)
	}
	// Segment statements are short and many: JIT compilation would cost more than it saves.
	if _, set := cfg.ConnConfig.RuntimeParams["jit"]; !set {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	// jsonb (device metadata) is read and written for every known device of
	// a segment: a faster codec than encoding/json matters there.
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		conn.TypeMap().RegisterType(&pgtype.Type{Name: "jsonb", OID: pgtype.JSONBOID,
			Codec: &pgtype.JSONBCodec{Marshal: gojson.Marshal, Unmarshal: gojson.Unmarshal}})
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	ms, err := migrations()
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, migrations: ms, lastSeen: DefaultLastSeenResolution, cache: newCache(o.cacheEntries), ready: map[string]bool{}}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool is the connection pool, for reads in tests and tools.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// lockKey is an advisory lock key for a name.
func lockKey(parts ...string) int64 {
	h := fnv.New64a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return int64(h.Sum64()) //nolint:gosec // a hash, wrapping is fine
}

// EnsureTenant creates the tenant's schema and applies the migrations it
// lacks, once per process; concurrent replicas serialize on an advisory lock.
func (s *Store) EnsureTenant(ctx context.Context, slug string) error {
	schema := Schema(slug)
	s.mu.Lock()
	done := s.ready[schema]
	s.mu.Unlock()
	if done {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("migrate", schema)); err != nil {
			return fmt.Errorf("locking: %w", err)
		}
		ident := pgx.Identifier{schema}.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
			return fmt.Errorf("creating schema: %w", err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident); err != nil {
			return fmt.Errorf("setting search_path: %w", err)
		}
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
			return fmt.Errorf("creating schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("reading schema version: %w", err)
		}
		for _, m := range s.migrations {
			if m.version <= current {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return fmt.Errorf("recording migration %s: %w", m.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("preparing schema %s: %w", schema, err)
	}
	s.mu.Lock()
	s.ready[schema] = true
	s.mu.Unlock()
	return nil
}

// inTenant runs f in a transaction whose search_path is the tenant's schema.
func (s *Store) inTenant(ctx context.Context, slug string, f func(pgx.Tx) error) error {
	if err := s.EnsureTenant(ctx, slug); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { //nolint:wrapcheck // f's errors carry their context
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{Schema(slug)}.Sanitize()); err != nil {
			return fmt.Errorf("setting search_path: %w", err)
		}
		return f(tx)
	})
}
