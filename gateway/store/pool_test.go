package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// TestPoolSizeAndStatementTimeout checks that the pool size and statement
// timeout take effect on the pool's connections, and that what the DSN
// sets wins over the options (the gateway's flags).
func TestPoolSizeAndStatementTimeout(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	for _, tc := range []struct {
		name string
		// query is appended to the DSN (which has one already).
		query    string
		opts     []store.Option
		maxConns int32
		timeout  string
	}{
		{name: "defaults", maxConns: store.DefaultMaxConns, timeout: "0"},
		{name: "options", opts: []store.Option{store.WithMaxConns(3), store.WithStatementTimeout(1500 * time.Millisecond)},
			maxConns: 3, timeout: "1500ms"},
		{name: "a timeout rounds up to milliseconds", opts: []store.Option{store.WithStatementTimeout(2*time.Second + time.Microsecond)},
			maxConns: store.DefaultMaxConns, timeout: "2001ms"},
		{name: "the DSN's parameters win", query: "&pool_max_conns=5&statement_timeout=7000",
			opts:     []store.Option{store.WithMaxConns(3), store.WithStatementTimeout(time.Second)},
			maxConns: 5, timeout: "7s"},
		{name: "the DSN's options win", query: "&options=-c%20statement_timeout%3D9s",
			opts:     []store.Option{store.WithStatementTimeout(time.Second)},
			maxConns: store.DefaultMaxConns, timeout: "9s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.Open(ctx, dsn+tc.query, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Pool().Stat().MaxConns(); got != tc.maxConns {
				t.Errorf("pool size %d, want %d", got, tc.maxConns)
			}
			var timeout string
			if err := s.Pool().QueryRow(ctx, "SHOW statement_timeout").Scan(&timeout); err != nil {
				t.Fatal(err)
			}
			if timeout != tc.timeout {
				t.Errorf("statement_timeout %q, want %q", timeout, tc.timeout)
			}
		})
	}
}

// TestStatementTimeoutCancelsAStatement: PostgreSQL cancels a statement of
// the pool that runs longer than the timeout, while a tenant's schema is
// still prepared (migrations run without it).
func TestStatementTimeoutCancelsAStatement(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, pgtest.NewDatabase(t), store.WithStatementTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Pool().Exec(ctx, "SELECT pg_sleep(5)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("a 5 s statement: %v, want query_canceled (57014) by the statement timeout", err)
	}
	if err := s.EnsureTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
}
