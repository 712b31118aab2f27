package mtls_test

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	"github.com/serviceradar/sync-operator/test/pkitest"
)

// BenchmarkHandshake measures full mutual TLS handshakes (new TCP connection,
// client SVID verified and classified by the server) on loopback
// (`make bench-identity`).
func BenchmarkHandshake(b *testing.B) {
	p := newPKI(b)
	dir := b.TempDir()
	gw, _ := p.root.IssueSVID(spiffeID(b, "gateway", "platform", "gw-0"), time.Hour)
	srvSrc := pkitest.Source(b, filepath.Join(dir, "gw"), gw, p.root.Cert)
	cl, _ := p.root.IssueSVID(spiffeID(b, "sync", "acme", "w1"), time.Hour)
	clSrc := pkitest.Source(b, filepath.Join(dir, "cl"), cl, p.root.Cert)
	classifier, _ := identity.NewClassifier("", "")

	lis, err := tls.Listen("tcp", "127.0.0.1:0", mtls.ServerConfig(mtls.Verifier{Classifier: classifier, Source: srvSrc}))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = lis.Close() }()
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}(conn)
		}
	}()
	cfg := mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: clSrc}, mtls.ServerExpectation{})
	cfg.ClientSessionCache = nil // every iteration is a full handshake
	b.ReportAllocs()
	for b.Loop() {
		conn, err := tls.Dial("tcp", lis.Addr().String(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		_ = conn.Close()
	}
}
