package mtls

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/serviceradar/sync-operator/identity"
)

// ErrCertificateExpired means the caller's certificate, or a CA certificate
// of its chain, is not valid at the time of the call: the chain was checked
// in the handshake, but a connection outlives it.
var ErrCertificateExpired = errors.New("the client certificate chain is not valid at this time")

// Validity is the interval in which a presented chain (leaf first) is valid:
// the latest NotBefore and the earliest NotAfter of the leaf and of the
// presented certificates that issued it, one after the other. Certificates
// the peer sent that are not on that path do not count, nor does the root,
// which the peer does not send (an expired root fails every handshake).
func Validity(certs []*x509.Certificate) (notBefore, notAfter time.Time) {
	if len(certs) == 0 {
		return time.Time{}, time.Time{}
	}
	cur := certs[0]
	notBefore, notAfter = cur.NotBefore, cur.NotAfter
	// Each certificate is visited at most once, so a loop of issuers ends.
	used := make([]bool, len(certs))
	used[0] = true
	for {
		next := issuer(certs, used, cur)
		if next < 0 {
			return notBefore, notAfter
		}
		used[next] = true
		cur = certs[next]
		if cur.NotBefore.After(notBefore) {
			notBefore = cur.NotBefore
		}
		if cur.NotAfter.Before(notAfter) {
			notAfter = cur.NotAfter
		}
	}
}

// CheckValidity refuses a chain that is not valid at now.
func CheckValidity(certs []*x509.Certificate, now time.Time) error {
	notBefore, notAfter := Validity(certs)
	if now.Before(notBefore) || now.After(notAfter) {
		return fmt.Errorf("valid from %s to %s, now %s: %w", notBefore.UTC().Format(time.RFC3339),
			notAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrCertificateExpired)
	}
	return nil
}

// peerCertificates are the certificates the caller presented in the handshake.
func peerCertificates(ctx context.Context) ([]*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, ErrNoPeer
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, ErrNoPeer
	}
	return info.State.PeerCertificates, nil
}

// PeerIdentityAt is PeerIdentity on the clock of the caller: the chain the
// handshake verified must still be valid at now, or the call is refused
// with ErrCertificateExpired.
func PeerIdentityAt(ctx context.Context, c identity.Classifier, now time.Time) (identity.Identity, error) {
	certs, err := peerCertificates(ctx)
	if err != nil {
		return identity.Identity{}, err
	}
	if err := CheckValidity(certs, now); err != nil {
		return identity.Identity{}, err
	}
	return c.Classify(certs)
}

// PeerNotAfter is when the caller's chain stops being valid: a long-lived
// stream ends then.
func PeerNotAfter(ctx context.Context) (time.Time, error) {
	certs, err := peerCertificates(ctx)
	if err != nil {
		return time.Time{}, err
	}
	_, notAfter := Validity(certs)
	return notAfter, nil
}

// issuer is the index of the unused certificate that issued cur, or -1. A
// single certificate with the issuer's name is taken as it is (the handshake
// verified the chain); only between several does the signature decide, so
// that the common case costs no signature check per call.
func issuer(certs []*x509.Certificate, used []bool, cur *x509.Certificate) int {
	found := -1
	for i, c := range certs {
		if used[i] || !bytes.Equal(cur.RawIssuer, c.RawSubject) {
			continue
		}
		if found >= 0 {
			for j, c := range certs {
				if !used[j] && bytes.Equal(cur.RawIssuer, c.RawSubject) && cur.CheckSignatureFrom(c) == nil {
					return j
				}
			}
			return -1
		}
		found = i
	}
	return found
}
