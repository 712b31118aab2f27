package mtls_test

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
)

// TestValidityCoversThePresentedChain checks the per-call validity of a
// presented chain (issue 14, defect 7): the leaf and the CA certificates
// that issued it count, certificates off that path do not.
func TestValidityCoversThePresentedChain(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) func() time.Time { return func() time.Time { return t0.Add(d) } }
	root, err := ca.NewRoot("root", 0, at(0))
	if err != nil {
		t.Fatal(err)
	}
	// acme's CA starts an hour after the leaf it issues below (a clock
	// moved back): the chain is valid only once both are.
	root.Now = at(time.Hour)
	acme, err := root.NewTenantCA("acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	acme.Now = at(0)
	edge, err := acme.IssueEdgeClient("edge", "hq", "acme", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	root.Now = at(0)
	svid, err := root.IssueSVID(spiffeID(t, "sync", "acme", "w"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// An unrelated CA certificate that expired long ago, sent along.
	root.Now = at(-100 * 24 * time.Hour)
	stale, err := root.NewTenantCA("globex", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		certs []*x509.Certificate
		now   time.Duration
		valid bool
	}{
		{"an SVID within its hour", []*x509.Certificate{svid.Cert}, 30 * time.Minute, true},
		{"an SVID after its hour", []*x509.Certificate{svid.Cert}, time.Hour + time.Second, false},
		{"an SVID before it was issued", []*x509.Certificate{svid.Cert}, -time.Hour, false},
		{"an edge leaf valid, its CA not yet", append([]*x509.Certificate{edge.Cert}, edge.Chain...), 30 * time.Minute, false},
		{"an edge leaf and its CA both valid", append([]*x509.Certificate{edge.Cert}, edge.Chain...), 90 * time.Minute, true},
		{"an edge leaf after its lifetime", append([]*x509.Certificate{edge.Cert}, edge.Chain...), 2*time.Hour + time.Second, false},
		{"an expired certificate off the chain does not count", []*x509.Certificate{svid.Cert, stale.Cert}, 30 * time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mtls.CheckValidity(tc.certs, t0.Add(tc.now))
			if (err == nil) != tc.valid || (err != nil && !errors.Is(err, mtls.ErrCertificateExpired)) {
				t.Fatalf("CheckValidity = %v, want valid=%v", err, tc.valid)
			}
		})
	}
	if _, notAfter := mtls.Validity(append([]*x509.Certificate{edge.Cert}, edge.Chain...)); !notAfter.Equal(edge.Cert.NotAfter) {
		t.Fatalf("the chain's end %s, want the leaf's %s", notAfter, edge.Cert.NotAfter)
	}
}
