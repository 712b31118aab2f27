package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Test hooks of package store.

// MigrationVersions are the versions of the embedded migrations, in order.
func MigrationVersions() ([]int, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	out := make([]int, len(ms))
	for i, m := range ms {
		out[i] = m.version
	}
	return out, nil
}

// StopMigrationsAt makes s migrate tenant schemas up to version n only, as
// the gateway of that version did.
func StopMigrationsAt(s *Store, n int) {
	kept := s.migrations[:0:0]
	for _, m := range s.migrations {
		if m.version <= n {
			kept = append(kept, m)
		}
	}
	s.migrations = kept
}

// RetentionLockKey is the advisory lock a pruning replica holds.
var RetentionLockKey = retentionLockKey

// InBatch makes r call f inside each prune batch's transaction, after its
// statement, while it holds what the statement locked.
func InBatch(r *Retainer, f func(ctx context.Context, tx pgx.Tx, table string)) { r.inBatch = f }
