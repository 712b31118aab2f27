package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/test/pgtest"
)

// schemaExists reports whether PostgreSQL has the schema.
func schemaExists(t *testing.T, s *store.Store, schema string) bool {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func oneDevice(slug, host string) store.Segment {
	return store.Segment{TenantID: acmeID, TenantSlug: slug, Partition: "default", Integration: "armis",
		SourceUID: srcUID, SyncServiceID: "ss", AgentID: "w", RunID: uuid.NewString(),
		Devices: []store.Device{{DeviceID: "1", MACs: []string{"00:1b:44:11:3a:b7"}, Hostname: host}}}
}

// The attack of issue 14: slugs whose schema names PostgreSQL would cut to
// one (they share their first 56 characters), or that map to one name, are
// refused before any schema is created or written.
func TestSlugsThatWouldShareASchemaAreRefused(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	prefix := strings.Repeat("p", 56)
	cases := []struct {
		name, slug string
	}{
		{"57 characters sharing 56 with another (a)", prefix + "a"},
		{"57 characters sharing 56 with another (b)", prefix + "b"},
		{"longer than the CRD allows", strings.Repeat("s", 33)},
		{"upper case, the schema of its lower-case twin", "Acme"},
		{"an underscore, the schema of a-b", "a_b"},
		{"a dot", "a.b"},
		{"empty", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.EnsureTenant(ctx, tc.slug); !errors.Is(err, store.ErrInvalidSlug) {
				t.Fatalf("EnsureTenant(%q) = %v, want ErrInvalidSlug", tc.slug, err)
			}
			if _, err := s.ApplySegment(ctx, oneDevice(tc.slug, "host")); !errors.Is(err, store.ErrInvalidSlug) {
				t.Fatalf("ApplySegment for %q = %v, want ErrInvalidSlug", tc.slug, err)
			}
		})
	}
	for _, schema := range []string{"tenant_" + prefix, "tenant_" + strings.Repeat("s", 33), "tenant_a_b"} {
		if schemaExists(t, s, schema) {
			t.Errorf("schema %s was created", schema)
		}
	}
}

// The longest slugs a Tenant may have keep schemas of their own, however
// much of them they share.
func TestLongestSlugsGetSchemasOfTheirOwn(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a, b := strings.Repeat("q", 31)+"a", strings.Repeat("q", 31)+"b"
	for _, slug := range []string{a, b} {
		if _, err := s.ApplySegment(ctx, oneDevice(slug, slug+"-host")); err != nil {
			t.Fatal(err)
		}
	}
	for _, slug := range []string{a, b} {
		if got := count(t, s, slug, ""); got != 1 {
			t.Fatalf("%s has %d devices, want its own one", slug, got)
		}
		if got := count(t, s, slug, "hostname = $1", slug+"-host"); got != 1 {
			t.Fatalf("%s's device is not its own", slug)
		}
	}
}

// DropTenant removes a tenant's schema; a segment still in flight cannot
// create it again; a Tenant created again with the slug starts empty, on
// this replica and on one that was told of the deletion (ForgetTenant),
// whose cache of the old schema is gone.
func TestDropTenant(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	replicas := make([]*store.Store, 2)
	for i := range replicas {
		s, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		replicas[i] = s
	}
	a, b := replicas[0], replicas[1]
	for _, r := range replicas {
		if _, err := r.ApplySegment(ctx, oneDevice("doomed", "old-host")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.ApplySegment(ctx, oneDevice("kept", "kept-host")); err != nil {
		t.Fatal(err)
	}

	if err := a.DropTenant(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	b.ForgetTenant("doomed") // as b's Tenant informer does
	if schemaExists(t, a, "tenant_doomed") {
		t.Fatal("the schema survived DropTenant")
	}
	if got := count(t, a, "kept", ""); got != 1 {
		t.Fatalf("another tenant lost its devices: %d", got)
	}
	if err := a.DropTenant(ctx, "doomed"); err != nil {
		t.Fatalf("dropping again: %v", err)
	}
	for i, r := range replicas {
		if _, err := r.ApplySegment(ctx, oneDevice("doomed", "late-host")); !errors.Is(err, store.ErrTenantGone) {
			t.Fatalf("replica %d applied a segment of a deleted tenant: %v", i, err)
		}
	}
	if schemaExists(t, a, "tenant_doomed") {
		t.Fatal("a late segment created the dropped schema again")
	}

	// Created again: empty, and both replicas write it.
	for i, r := range replicas {
		if err := r.EnsureTenant(ctx, "doomed"); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	if got := count(t, a, "doomed", ""); got != 0 {
		t.Fatalf("the tenant created again has %d devices of the dropped one", got)
	}
	for i, r := range replicas {
		if _, err := r.ApplySegment(ctx, oneDevice("doomed", "new-host")); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	if got := count(t, a, "doomed", "hostname = 'new-host'"); got != 1 {
		t.Fatalf("the tenant created again has %d devices, want 1", got)
	}
	if err := a.DropTenant(ctx, "Bad_Slug"); !errors.Is(err, store.ErrInvalidSlug) {
		t.Fatalf("DropTenant of an invalid slug = %v", err)
	}
}
