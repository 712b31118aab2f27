// Package mtls builds the client and server TLS configurations of the gateway
// and the worker from either the SPIFFE Workload API or PEM files, verifies
// peers in the handshake (SPIFFE SVIDs against the trust bundle, edge
// certificates against the platform root and their tenant's CA), and gives
// gRPC handlers the caller's identity.
package mtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/serviceradar/sync-operator/identity/ca"
)

// Source is where one side of a connection gets its own certificate and the
// roots it trusts.
type Source interface {
	// Certificate is the current certificate (with intermediates) and key.
	Certificate() (*tls.Certificate, error)
	// Bundles verifies SPIFFE SVIDs of peers.
	Bundles() x509bundle.Source
	// EdgeRoots is the platform root pool edge certificates must chain to, or
	// nil when edge certificates are not accepted.
	EdgeRoots() (*x509.CertPool, error)
}

// FileSource reads a certificate, key and CA bundle from PEM files and reloads
// them when they change on disk (as Secret volumes do), without a restart. The
// CA bundle is trusted both for SPIFFE SVIDs of the trust domain and for edge
// certificates.
type FileSource struct {
	certFile, keyFile, caFile string
	td                        spiffeid.TrustDomain

	mu    sync.Mutex
	stamp string
	cert  *tls.Certificate
	roots []*x509.Certificate
	pool  *x509.CertPool
}

// NewFileSource loads the files once and fails when they are not a valid
// certificate, matching key and CA bundle.
func NewFileSource(certFile, keyFile, caFile string, td spiffeid.TrustDomain) (*FileSource, error) {
	s := &FileSource{certFile: certFile, keyFile: keyFile, caFile: caFile, td: td}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSource) fileStamp() (string, error) {
	var b bytes.Buffer
	for _, f := range []string{s.certFile, s.keyFile, s.caFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("reading TLS file: %w", err)
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
	}
	return b.String(), nil
}

// reload re-reads the files when their size or modification time changed. On
// a failed read the previous material stays in use.
func (s *FileSource) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamp, err := s.fileStamp()
	if err != nil {
		if s.cert != nil {
			return nil
		}
		return err
	}
	if stamp == s.stamp {
		return nil
	}
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return fmt.Errorf("reading certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return fmt.Errorf("reading key file: %w", err)
	}
	caPEM, err := os.ReadFile(s.caFile)
	if err != nil {
		return fmt.Errorf("reading CA file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls errors never quote key bytes, but say which files failed.
		if s.cert != nil {
			return nil // keep serving the last good pair
		}
		return fmt.Errorf("certificate %s and key %s do not form a key pair: %w", s.certFile, s.keyFile, err)
	}
	roots, err := ca.ParseCertificatesPEM(caPEM)
	if err != nil {
		if s.cert != nil {
			return nil
		}
		return fmt.Errorf("CA file %s: %w", s.caFile, err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	s.stamp, s.cert, s.roots, s.pool = stamp, &pair, roots, pool
	return nil
}

// Certificate returns the current certificate, reloading it when the files changed.
func (s *FileSource) Certificate() (*tls.Certificate, error) {
	if err := s.reload(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, nil
}

// Bundles trusts the CA file for SVIDs of the source's trust domain.
func (s *FileSource) Bundles() x509bundle.Source {
	return bundleFunc(func(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
		if td != s.td {
			return nil, fmt.Errorf("no trust bundle for trust domain %q", td)
		}
		if err := s.reload(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return x509bundle.FromX509Authorities(td, s.roots), nil
	})
}

// EdgeRoots returns the CA file's certificates as a pool.
func (s *FileSource) EdgeRoots() (*x509.CertPool, error) {
	if err := s.reload(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pool, nil
}

// WorkloadSource gets the SVID and trust bundles from the SPIFFE Workload API
// (following rotation), and optionally the platform root for edge
// certificates from a PEM file.
type WorkloadSource struct {
	src  *workloadapi.X509Source
	edge *FileRoots
}

// NewWorkloadSource wraps an X509Source. edgeRoots may be nil.
func NewWorkloadSource(src *workloadapi.X509Source, edgeRoots *FileRoots) *WorkloadSource {
	return &WorkloadSource{src: src, edge: edgeRoots}
}

// DialWorkloadAPI connects to the SPIFFE Workload API at addr (unix:// or
// tcp://) and returns its source once the first SVID and trust bundles have
// arrived; it follows their rotation until Close. A non-zero id selects that
// SVID when several registration entries match the workload (PickSVID).
// edgeRoots may be nil. The gateway and the worker both get their Workload
// API identity here.
func DialWorkloadAPI(ctx context.Context, addr string, id spiffeid.ID, edgeRoots *FileRoots) (*WorkloadSource, error) {
	opts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(workloadapi.WithAddr(addr))}
	if !id.IsZero() {
		opts = append(opts, PickSVID(id))
	}
	x, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to the Workload API at %s: %w", addr, err)
	}
	return NewWorkloadSource(x, edgeRoots), nil
}

// Close ends the Workload API source.
func (w *WorkloadSource) Close() error {
	if err := w.src.Close(); err != nil {
		return fmt.Errorf("closing the Workload API source: %w", err)
	}
	return nil
}

// PickSVID returns an X509Source option that selects the SVID with the given
// ID when several registration entries match the workload.
func PickSVID(id spiffeid.ID) workloadapi.X509SourceOption {
	return workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
		for _, s := range svids {
			if s.ID == id {
				return s
			}
		}
		return svids[0]
	})
}

// Certificate returns the current SVID.
func (w *WorkloadSource) Certificate() (*tls.Certificate, error) {
	svid, err := w.src.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("getting X.509-SVID from the Workload API: %w", err)
	}
	c := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, cert := range svid.Certificates {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c, nil
}

// Bundles returns the Workload API's trust bundles.
func (w *WorkloadSource) Bundles() x509bundle.Source { return w.src }

// EdgeRoots returns the platform root from the configured file, or nil.
func (w *WorkloadSource) EdgeRoots() (*x509.CertPool, error) {
	if w.edge == nil {
		return nil, nil
	}
	return w.edge.Pool()
}

// FileRoots is a CA bundle file reloaded when it changes.
type FileRoots struct {
	file string

	mu    sync.Mutex
	stamp time.Time
	size  int64
	pool  *x509.CertPool
}

// NewFileRoots loads a CA bundle file.
func NewFileRoots(file string) (*FileRoots, error) {
	r := &FileRoots{file: file}
	if _, err := r.Pool(); err != nil {
		return nil, err
	}
	return r, nil
}

// Pool returns the current roots, re-reading the file when it changed.
func (r *FileRoots) Pool() (*x509.CertPool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := os.Stat(r.file)
	if err != nil {
		if r.pool != nil {
			return r.pool, nil
		}
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	if r.pool != nil && st.ModTime().Equal(r.stamp) && st.Size() == r.size {
		return r.pool, nil
	}
	data, err := os.ReadFile(r.file)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	certs, err := ca.ParseCertificatesPEM(data)
	if err != nil {
		if r.pool != nil {
			return r.pool, nil
		}
		return nil, fmt.Errorf("CA file %s: %w", r.file, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	r.pool, r.stamp, r.size = pool, st.ModTime(), st.Size()
	return pool, nil
}

var errNoEdge = errors.New("edge certificates are not accepted here")

// bundleFunc adapts a function to x509bundle.Source.
type bundleFunc func(spiffeid.TrustDomain) (*x509bundle.Bundle, error)

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (f bundleFunc) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return f(td)
}
