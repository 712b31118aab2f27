package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/serviceradar/sync-operator/test/pgtest"
)

// PostgreSQL's data exceptions (SQLSTATE class 22) are permanent; other
// errors, such as a lost connection or a serialization failure, are not.
func TestInvalidDataClassifiesPostgreSQLErrors(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, tc := range []struct {
		query     string
		permanent bool
	}{
		{"SELECT 'run-1'::uuid", true},         // 22P02 invalid_text_representation
		{`SELECT '"a\u0000b"'::jsonb`, true},   // 22P05 untranslatable_character
		{"SELECT 2147483648::integer", true},   // 22003 numeric_value_out_of_range
		{"SELECT 1/0", true},                   // 22012 division_by_zero
		{"SELECT * FROM no_such_table", false}, // 42P01 undefined_table
	} {
		_, qerr := pool.Exec(context.Background(), tc.query)
		if qerr == nil {
			t.Fatalf("%s: no error", tc.query)
		}
		got := errors.Is(invalidData(qerr), ErrInvalidSegment)
		if got != tc.permanent {
			t.Errorf("%s (%v): permanent = %v, want %v", tc.query, qerr, got, tc.permanent)
		}
		if got && !strings.Contains(invalidData(qerr).Error(), "SQLSTATE 22") {
			t.Errorf("%s: %v does not name its SQLSTATE", tc.query, invalidData(qerr))
		}
	}
}
