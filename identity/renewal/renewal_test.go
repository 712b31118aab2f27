package renewal_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/renewal"
)

// TestFilesTakeOnlyTheirOwnCertificate: the worker writes an answer only
// when it is a certificate for the key it made and the identity it holds,
// and then atomically, the key readable by its owner alone.
func TestFilesTakeOnlyTheirOwnCertificate(t *testing.T) {
	root, err := ca.NewRoot("root", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	tca, err := root.NewTenantCA("acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name  string
		issue func(req *renewal.Request) []byte
		ok    bool
	}{
		{"a certificate for the request's key and identity", func(req *renewal.Request) []byte {
			c, err := tca.IssueEdgeClientForKey(req.Key.Public(), "site-a", "default", "acme", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return c.CertPEM()
		}, true},
		{"a certificate for another key", func(*renewal.Request) []byte {
			c, err := tca.IssueEdgeClientForKey(stranger.Public(), "site-a", "default", "acme", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return c.CertPEM()
		}, false},
		{"a certificate for another identity", func(req *renewal.Request) []byte {
			c, err := tca.IssueEdgeClientForKey(req.Key.Public(), "site-b", "default", "acme", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return c.CertPEM()
		}, false},
		{"no certificate", func(*renewal.Request) []byte { return []byte("not PEM") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cur, err := tca.IssueEdgeClient("site-a", "default", "acme", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM, _ := cur.Key.MarshalPEM()
			f := &renewal.Files{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
			if err := renewal.WriteFiles(f.CertFile, f.KeyFile, cur.CertPEM(), keyPEM); err != nil {
				t.Fatal(err)
			}
			if req, err := f.Next(false); err != nil || req != nil {
				t.Fatalf("a renewal before it is due: %v %v", req, err)
			}
			f.Trigger()
			req, err := f.Next(false)
			if err != nil || req == nil {
				t.Fatalf("no request when asked: %v", err)
			}
			serial, err := f.Answer(req.ID, true, tc.issue(req), "Issued", "")
			written, _ := os.ReadFile(f.CertFile)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused its own certificate: %v", err)
			case !tc.ok && err == nil:
				t.Fatalf("took %s", serial)
			case !tc.ok && string(written) != string(cur.CertPEM()):
				t.Fatal("the files changed after a refused answer")
			case tc.ok && string(written) == string(cur.CertPEM()):
				t.Fatal("the files did not change")
			}
			if fi, err := os.Stat(f.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file mode %v %v", fi.Mode().Perm(), err)
			}
		})
	}
}
