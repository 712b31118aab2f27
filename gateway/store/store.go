// Package store is the gateway's PostgreSQL: one schema per tenant
// (tenant_<slug>), created on first use with versioned migrations embedded
// in the binary, and the transactions that apply a segment of device
// updates, retract devices and read sweep targets.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/utils/clock"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
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
// outside [a-z0-9_] turned to _. Only the schema of a valid slug (see
// CheckSlug) is ever created or used: for those the name is injective and
// within PostgreSQL's 63 bytes.
func Schema(slug string) string {
	return "tenant_" + unsafeChars.ReplaceAllString(strings.ToLower(slug), "_")
}

// MaxIdentifierLength is PostgreSQL's NAMEDATALEN-1: a longer identifier is
// silently truncated, so two names sharing their first 63 bytes would be one.
const MaxIdentifierLength = 63

// ErrInvalidSlug refuses a tenant slug whose schema could be shared with
// another slug's.
var ErrInvalidSlug = errors.New("invalid tenant slug")

// CheckSlug refuses a slug whose schema name would not be its own: one that
// v1alpha1.ValidSlug refuses (upper case or '_' would share a schema with
// another slug, and a name over 63 bytes would be truncated by PostgreSQL
// onto another tenant's schema).
func CheckSlug(slug string) error {
	if err := v1alpha1.ValidSlug(slug); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSlug, err)
	}
	if len(Schema(slug)) > MaxIdentifierLength {
		return fmt.Errorf("%w: schema %q is longer than %d bytes", ErrInvalidSlug, Schema(slug), MaxIdentifierLength)
	}
	return nil
}

// Store is safe for concurrent use, and by several gateway replicas at once.
type Store struct {
	pool       *pgxpool.Pool
	migrations []migration
	lastSeen   time.Duration
	cache      *cache
	// clock stamps what the store writes (see now).
	clock clock.PassiveClock

	mu    sync.Mutex
	ready map[string]bool
	// gone are the schemas of tenants that were deleted (ForgetTenant,
	// DropTenant): a segment still in flight for one may not create it
	// again; EnsureTenant (a Tenant that exists) lifts it.
	gone map[string]bool
}

// DefaultLastSeenResolution is how stale a device's last_seen may get before
// a report that changes nothing else rewrites it.
const DefaultLastSeenResolution = time.Minute

// Option configures a Store.
type Option func(*options)

type options struct {
	cacheEntries     int
	maxConns         int
	statementTimeout time.Duration
	clock            clock.PassiveClock
}

// WithCacheEntries bounds the in-memory device cache (see cache) to n
// identifiers and device states across all tenants; 0 (or a negative n)
// disables it, as --device-cache-entries=0 does. The
// default is DefaultCacheEntries.
func WithCacheEntries(n int) Option { return func(o *options) { o.cacheEntries = n } }

// WithClock sets the clock that stamps what the store writes (runs,
// claims, identifiers, devices seen without a time of their own, dry runs),
// that retention measures ages by, and that orders the device cache's
// partitions by use; nil (the default) is the real clock.
func WithClock(c clock.PassiveClock) Option { return func(o *options) { o.clock = c } }

// DefaultMaxConns is the size of the connection pool when neither
// WithMaxConns nor the DSN's pool_max_conns sets it: a fixed number, not
// pgxpool's default of the node's CPU count, so that the replicas of a
// gateway on large nodes stay well within PostgreSQL's max_connections
// (100 by default).
const DefaultMaxConns = 10

// WithMaxConns bounds the connections the pool opens to n; n <= 0 takes
// DefaultMaxConns. A pool_max_conns in the DSN wins over it.
func WithMaxConns(n int) Option { return func(o *options) { o.maxConns = n } }

// WithStatementTimeout sets statement_timeout on every connection of the
// pool: PostgreSQL cancels a statement that runs longer than d (rounded up
// to milliseconds); d <= 0 keeps the server's or role's setting. A
// statement_timeout in the DSN (as a parameter, or in options as
// -c statement_timeout=...) wins over it. Tenant schema migrations run
// without a timeout: they may rewrite a large table.
func WithStatementTimeout(d time.Duration) Option {
	return func(o *options) { o.statementTimeout = d }
}

// Open connects to PostgreSQL.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{cacheEntries: DefaultCacheEntries}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clock == nil {
		o.clock = clock.RealClock{}
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing the PostgreSQL DSN: %w", err)
	}
	// Segment statements are short and many: JIT compilation would cost more than it saves.
	if _, set := cfg.ConnConfig.RuntimeParams["jit"]; !set {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	if err := o.apply(cfg); err != nil {
		return nil, err
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
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == insufficientPrivilege {
			return nil, &PrivilegeError{Role: cfg.ConnConfig.User, Database: cfg.ConnConfig.Database, Privilege: "CONNECT", Err: err}
		}
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	// Without these every tenant fails: refuse at once, naming the grant.
	if missing, err := missingPrivilege(ctx, pool, ""); err != nil {
		pool.Close()
		return nil, fmt.Errorf("checking the privileges of the PostgreSQL role: %w", err)
	} else if missing != nil {
		pool.Close()
		return nil, missing
	}
	ms, err := migrations()
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, migrations: ms, lastSeen: DefaultLastSeenResolution, cache: newCache(o.cacheEntries, o.clock), clock: o.clock,
		ready: map[string]bool{}, gone: map[string]bool{}}, nil
}

// apply sets the pool size and statement timeout on a parsed DSN, where the
// DSN does not set them itself.
func (o options) apply(cfg *pgxpool.Config) error {
	// pgxpool takes pool_max_conns out of what it parsed; a plain parse of
	// the same string keeps it among the runtime parameters.
	raw, err := pgconn.ParseConfig(cfg.ConnString())
	if err != nil {
		return fmt.Errorf("parsing the PostgreSQL DSN: %w", err)
	}
	if _, set := raw.RuntimeParams["pool_max_conns"]; !set {
		n := o.maxConns
		if n <= 0 {
			n = DefaultMaxConns
		}
		if n > math.MaxInt32 {
			return fmt.Errorf("pool size %d is too large", n)
		}
		cfg.MaxConns = int32(n) //nolint:gosec // bounded above
	}
	params := cfg.ConnConfig.RuntimeParams
	_, set := params["statement_timeout"]
	if o.statementTimeout > 0 && !set && !strings.Contains(params["options"], "statement_timeout") {
		ms := (o.statementTimeout + time.Millisecond - 1) / time.Millisecond
		params["statement_timeout"] = strconv.FormatInt(int64(ms), 10)
	}
	return nil
}

// PostgreSQL's SQLSTATEs for a privilege the role lacks, and for a schema
// it may not use (a search_path naming it skips it: "no schema has been
// selected").
const (
	insufficientPrivilege = "42501"
	invalidSchemaName     = "3F000"
)

// ErrPrivilege matches (errors.Is) every PrivilegeError.
var ErrPrivilege = errors.New("the PostgreSQL role lacks a privilege the gateway needs")

// PrivilegeError is PostgreSQL refusing the gateway's role something it
// needs: a privilege on the database, or ownership of a tenant's schema.
// Its message says what to grant, as SQL to run as a superuser or the
// database's owner.
type PrivilegeError struct {
	// Role and Database are the gateway's PostgreSQL role and database.
	Role, Database string
	// Privilege is the missing privilege on the database (CONNECT, CREATE
	// or TEMPORARY); empty when Schema is set.
	Privilege string
	// Schema is a tenant schema of which Owner, another role, owns the
	// schema or something in it: the gateway's role must own all of it.
	Schema, Owner string
	// Err is what PostgreSQL said, when it refused a statement.
	Err error
}

// Error implements error.
func (e *PrivilegeError) Error() string {
	role, db := pgx.Identifier{e.Role}.Sanitize(), pgx.Identifier{e.Database}.Sanitize()
	var msg string
	if e.Schema != "" {
		schema := pgx.Identifier{e.Schema}.Sanitize()
		msg = fmt.Sprintf("PostgreSQL role %s does not own schema %s and everything in it (role %s owns some of it, created under that role?): "+
			"as a superuser, run ALTER SCHEMA %s OWNER TO %s and ALTER TABLE ... OWNER TO %s for each of its tables, or "+
			"REASSIGN OWNED BY %s TO %s when that role owns nothing else",
			role, schema, pgx.Identifier{e.Owner}.Sanitize(), schema, role, role, pgx.Identifier{e.Owner}.Sanitize(), role)
	} else {
		why := map[string]string{
			"CONNECT":   "to connect",
			"CREATE":    "to create a schema per tenant",
			"TEMPORARY": "for the staging tables of every segment it applies",
		}[e.Privilege]
		msg = fmt.Sprintf("PostgreSQL role %s lacks the %s privilege on database %s, which the gateway needs %s: GRANT %s ON DATABASE %s TO %s",
			role, e.Privilege, db, why, e.Privilege, db, role)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns what PostgreSQL said.
func (e *PrivilegeError) Unwrap() error { return e.Err }

// Is matches ErrPrivilege.
func (e *PrivilegeError) Is(target error) bool { return target == ErrPrivilege }

// missingPrivilege finds what the gateway's role lacks: CREATE or
// TEMPORARY on the database, or (when schema is given and exists)
// ownership of the schema and of every relation in it. Nil when nothing.
func missingPrivilege(ctx context.Context, pool *pgxpool.Pool, schema string) (*PrivilegeError, error) {
	e := &PrivilegeError{}
	var create, temporary bool
	err := pool.QueryRow(ctx, `
SELECT current_user, current_database(),
    has_database_privilege(current_database(), 'CREATE'), has_database_privilege(current_database(), 'TEMPORARY'),
    coalesce((SELECT pg_get_userbyid(o.owner) FROM pg_namespace AS n,
        LATERAL (SELECT n.nspowner UNION ALL SELECT c.relowner FROM pg_class AS c WHERE c.relnamespace = n.oid) AS o (owner)
        WHERE n.nspname = $1 AND NOT pg_has_role(o.owner, 'USAGE') LIMIT 1), '')`, schema).
		Scan(&e.Role, &e.Database, &create, &temporary, &e.Owner)
	if err != nil {
		return nil, fmt.Errorf("reading privileges: %w", err)
	}
	switch {
	case !create:
		e.Privilege = "CREATE"
	case !temporary:
		e.Privilege = "TEMPORARY"
	case e.Owner != "":
		e.Schema = schema
	default:
		return nil, nil //nolint:nilnil // nothing is missing
	}
	return e, nil
}

// diagnose turns PostgreSQL's refusal of a privilege into a PrivilegeError
// that names what to grant; other errors (and a refusal it cannot explain)
// pass unchanged.
func (s *Store) diagnose(ctx context.Context, schema string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != insufficientPrivilege && pgErr.Code != invalidSchemaName {
		return err
	}
	missing, derr := missingPrivilege(ctx, s.pool, schema)
	if derr != nil || missing == nil {
		return err
	}
	missing.Err = err
	return missing
}

// now is the time on the store's clock (WithClock), in UTC.
func (s *Store) now() time.Time { return s.clock.Now().UTC() }

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

// EnsureTenant creates the schema of a tenant that exists and applies the
// migrations it lacks, once per process; concurrent replicas serialize on an
// advisory lock. A slug that CheckSlug refuses gets no schema.
func (s *Store) EnsureTenant(ctx context.Context, slug string) error {
	if err := CheckSlug(slug); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.gone, Schema(slug))
	s.mu.Unlock()
	return s.prepare(ctx, slug)
}

// prepare makes the tenant's schema ready, unless the tenant was deleted.
func (s *Store) prepare(ctx context.Context, slug string) error {
	if err := CheckSlug(slug); err != nil {
		return err
	}
	schema := Schema(slug)
	s.mu.Lock()
	done, gone := s.ready[schema], s.gone[schema]
	s.mu.Unlock()
	if gone {
		return fmt.Errorf("%w: the tenant %q was deleted", ErrTenantGone, slug)
	}
	if done {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A migration may rewrite a large table, and another replica's may
		// hold the lock meanwhile: no statement timeout.
		if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
			return fmt.Errorf("lifting the statement timeout: %w", err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("migrate", schema)); err != nil {
			return fmt.Errorf("locking: %w", err)
		}
		// A DropTenant of this replica may have run while this waited.
		s.mu.Lock()
		gone := s.gone[schema]
		s.mu.Unlock()
		if gone {
			return fmt.Errorf("%w: the tenant %q was deleted", ErrTenantGone, slug)
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
		return fmt.Errorf("preparing schema %s: %w", schema, s.diagnose(ctx, schema, err))
	}
	s.mu.Lock()
	s.ready[schema] = true
	s.mu.Unlock()
	return nil
}

// ErrTenantGone refuses work for a tenant whose Tenant was deleted.
var ErrTenantGone = errors.New("tenant is deleted")

// ForgetTenant is told that a tenant's Tenant is gone (or going): this
// replica forgets that its schema is ready and what its cache holds of it,
// and refuses to create it again until EnsureTenant. Every replica is told,
// so none keeps cache entries of a schema that another replica dropped
// (a schema created again restarts its partition generations).
func (s *Store) ForgetTenant(slug string) {
	schema := Schema(slug)
	s.mu.Lock()
	delete(s.ready, schema)
	s.gone[schema] = true
	s.mu.Unlock()
	if s.cache == nil {
		return
	}
	s.cache.mu.Lock()
	var parts []*partCache
	for k, p := range s.cache.parts {
		if k.schema == schema {
			parts = append(parts, p)
		}
	}
	s.cache.mu.Unlock()
	for _, p := range parts {
		p.seg.Lock() // after the segment that holds it, if any
		p.reset()
		p.seg.Unlock()
	}
}

// DropTenant drops a deleted tenant's schema with everything in it
// (deletionPolicy Drop), serialized with schema migrations of every replica
// on the same advisory lock; dropping a schema that does not exist is no
// error. It refuses a slug CheckSlug refuses: such a name could be another
// tenant's schema.
func (s *Store) DropTenant(ctx context.Context, slug string) error {
	if err := CheckSlug(slug); err != nil {
		return err
	}
	s.ForgetTenant(slug)
	schema := Schema(slug)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("migrate", schema)); err != nil {
			return fmt.Errorf("locking: %w", err)
		}
		if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("dropping: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dropping schema %s: %w", schema, s.diagnose(ctx, schema, err))
	}
	return nil
}

// inTenant runs f in a transaction whose search_path is the tenant's schema.
func (s *Store) inTenant(ctx context.Context, slug string, f func(pgx.Tx) error) error {
	if err := s.prepare(ctx, slug); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { //nolint:wrapcheck // f's errors carry their context
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{Schema(slug)}.Sanitize()); err != nil {
			return fmt.Errorf("setting search_path: %w", err)
		}
		return f(tx)
	})
	return s.diagnose(ctx, Schema(slug), err)
}
