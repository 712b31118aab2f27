// Package renewal is edge certificate self-renewal: the edge worker makes a
// new key, a PKCS#10 request for exactly its own identity and a proof (the
// request signed with its current certificate's key), and sends them over
// its ControlStream; the gateway relays them; the manager, which holds the
// tenant CA, checks them here and signs only what passes. The proof is what
// keeps the gateway from minting identities: it can relay and record a
// request, but not make one that a current edge certificate did not sign.
package renewal

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/serviceradar/sync-operator/identity/ca"
)

// Bounds of what a request carries (the CRD's MaxLength of the status
// fields the gateway records them in).
const (
	MaxCSRBytes         = 4096
	MaxCertificateBytes = 4096
	MaxProofBytes       = 512
)

// proofContext separates renewal proofs from every other signature the key
// makes (TLS handshakes among them).
const proofContext = "serviceradar edge certificate renewal v1\n"

// Reasons of an answer: Issued, or the rule that refused a request.
const (
	ReasonIssued = "Issued"
	// ReasonMalformed: not exactly one PEM request (or certificate) within bounds.
	ReasonMalformed = "MalformedRequest"
	// ReasonInvalidSignature: the request is not signed by its own key.
	ReasonInvalidSignature = "InvalidSignature"
	// ReasonTenantMismatch: the request names another tenant.
	ReasonTenantMismatch = "TenantMismatch"
	// ReasonIdentityMismatch: the request names another component or
	// partition, or anything besides the CN.
	ReasonIdentityMismatch = "IdentityMismatch"
	// ReasonCARequested: the request asks for basic constraints (a CA).
	ReasonCARequested = "CARequested"
	// ReasonKeyUsageNotAllowed: the request asks for a key usage or extended
	// key usage beyond digital signature, key agreement and client auth.
	ReasonKeyUsageNotAllowed = "KeyUsageNotAllowed"
	// ReasonExtensionNotAllowed: the request asks for subject alternative
	// names or any other extension.
	ReasonExtensionNotAllowed = "ExtensionNotAllowed"
	// ReasonKeyNotAllowed: a key type or size this platform does not issue for.
	ReasonKeyNotAllowed = "KeyNotAllowed"
	// ReasonKeyReused: the request carries the presented certificate's key.
	ReasonKeyReused = "KeyReused"
	// ReasonReplay: the request was answered before.
	ReasonReplay = "Replay"
	// ReasonInvalidProof: the proof is not the request signed with the
	// presented certificate's key.
	ReasonInvalidProof = "InvalidProof"
	// ReasonPresentedUntrusted: the presented certificate is not this
	// service's, issued by its tenant's current CA.
	ReasonPresentedUntrusted = "PresentedCertificateUntrusted"
	// ReasonPresentedExpired: the presented certificate is not valid now.
	ReasonPresentedExpired = "PresentedCertificateExpired"
	// ReasonPresentedRevoked: the presented certificate was issued before the
	// service's edge identity was issued afresh.
	ReasonPresentedRevoked = "PresentedCertificateRevoked"
	// ReasonNotServed: the SyncService is paused, not OnPrem, or not served
	// (its tenant, CA or identity is not in order).
	ReasonNotServed = "NotServed"
)

// Refusal is a request refused by one rule; it is never signed.
type Refusal struct {
	// Reason is one of the Reason constants.
	Reason string
	// Message explains it, without key material.
	Message string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

func refuse(reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// RequestID names a request: the SHA-256 (hex) of its DER.
func RequestID(csrDER []byte) string {
	sum := sha256.Sum256(csrDER)
	return hex.EncodeToString(sum[:])
}

// proofMessage is what a proof signs.
func proofMessage(csrDER []byte) []byte {
	return append([]byte(proofContext), csrDER...)
}

// Prove signs a request's DER with the current certificate's key.
func Prove(current crypto.Signer, csrDER []byte) ([]byte, error) {
	msg := proofMessage(csrDER)
	var sig []byte
	var err error
	switch current.Public().(type) {
	case ed25519.PublicKey:
		sig, err = current.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey, *rsa.PublicKey:
		sum := sha256.Sum256(msg)
		sig, err = current.Sign(rand.Reader, sum[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("proving a renewal request: unsupported key type %T", current.Public())
	}
	if err != nil {
		return nil, fmt.Errorf("proving a renewal request: %w", err)
	}
	return sig, nil
}

// verifyProof checks that proof is the request signed with cert's key.
func verifyProof(cert *x509.Certificate, csrDER, proof []byte) error {
	var algo x509.SignatureAlgorithm
	switch cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		algo = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		algo = x509.SHA256WithRSA
	case ed25519.PublicKey:
		algo = x509.PureEd25519
	default:
		return fmt.Errorf("unsupported key type %T", cert.PublicKey)
	}
	return cert.CheckSignature(algo, proofMessage(csrDER), proof) //nolint:wrapcheck // the caller says what failed
}

// Request is what an edge sends: a new key's request and its proof. Key
// stays at the edge.
type Request struct {
	// Key is the new private key; KeyPEM its PKCS#8 PEM.
	Key    crypto.Signer
	KeyPEM []byte
	// CSRPEM is the request; ID its RequestID.
	CSRPEM []byte
	ID     string
	// Proof signs the request with the current certificate's key.
	Proof []byte
}

// NewRequest makes a new ECDSA P-256 key and a request for exactly the
// common name cn (nothing else: the manager's template decides the rest),
// proved with current, the key of the certificate in use.
func NewRequest(current crypto.Signer, cn string) (*Request, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the renewal key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		return nil, fmt.Errorf("creating the certificate request for %s: %w", cn, err)
	}
	proof, err := Prove(current, der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, errors.New("encoding the renewal key failed") // the error could quote key material
	}
	return &Request{
		Key: key, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		CSRPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), ID: RequestID(der), Proof: proof,
	}, nil
}

// onePEM decodes exactly one PEM block of the given type, with nothing but
// white space around it.
func onePEM(data []byte, typ string, limit int) ([]byte, error) {
	if len(data) > limit {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), limit)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("not a PEM %s", typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("more than one PEM block")
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("PEM headers are not allowed")
	}
	return block.Bytes, nil
}

// ParseRequest decodes a request (exactly one PEM block within
// MaxCSRBytes) whose signature is its own key's, and returns it with its id.
func ParseRequest(csrPEM []byte) (*x509.CertificateRequest, string, error) {
	der, err := onePEM(csrPEM, "CERTIFICATE REQUEST", MaxCSRBytes)
	if err != nil {
		return nil, "", refuse(ReasonMalformed, "certificate request: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, "", refuse(ReasonMalformed, "certificate request does not parse: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", refuse(ReasonInvalidSignature, "the certificate request is not signed by its key: %v", err)
	}
	return csr, RequestID(der), nil
}

// ParseCertificate decodes one PEM certificate within MaxCertificateBytes.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	der, err := onePEM(certPEM, "CERTIFICATE", MaxCertificateBytes)
	if err != nil {
		return nil, refuse(ReasonMalformed, "presented certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, refuse(ReasonMalformed, "presented certificate does not parse: %v", err)
	}
	return c, nil
}

// Extension ids a request may carry, each checked below.
var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidClientAuth       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// allowedKeyUsage is what edge certificates carry (x509.KeyUsage bits).
const allowedKeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement

// CheckRequest applies the request rules for the identity cn (CN
// <component>.<partition>.<slug>.serviceradar): exactly that subject and
// nothing else, no CA, no key usage beyond an edge certificate's, no other
// extension, an acceptable key. The manager signs with its own template, so
// these rules refuse what a request asks for, rather than filter it.
func CheckRequest(csr *x509.CertificateRequest, cn string) error {
	got := csr.Subject.CommonName
	if got != cn {
		if tenantOf(got) != tenantOf(cn) {
			return refuse(ReasonTenantMismatch, "the request names tenant %q, the presented certificate tenant %q", clip(tenantOf(got)), tenantOf(cn))
		}
		return refuse(ReasonIdentityMismatch, "the request names %q, not %q", clip(got), cn)
	}
	if len(csr.Subject.Names) != 1 {
		return refuse(ReasonIdentityMismatch, "the request's subject has %d attributes; only the common name %q is allowed", len(csr.Subject.Names), cn)
	}
	for _, e := range csr.Extensions {
		switch {
		case e.Id.Equal(oidBasicConstraints):
			return refuse(ReasonCARequested, "the request asks for basic constraints; edge certificates are never CAs")
		case e.Id.Equal(oidKeyUsage):
			var bits asn1.BitString
			if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) != 0 {
				return refuse(ReasonMalformed, "the request's key usage does not parse")
			}
			var usage x509.KeyUsage
			for i := range bits.BitLength {
				if bits.At(i) != 0 {
					usage |= 1 << uint(i)
				}
			}
			if usage&^allowedKeyUsage != 0 {
				return refuse(ReasonKeyUsageNotAllowed, "the request asks for key usage %#x; edge certificates allow digital signature and key agreement only", int(usage))
			}
		case e.Id.Equal(oidExtKeyUsage):
			var oids []asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(e.Value, &oids); err != nil || len(rest) != 0 {
				return refuse(ReasonMalformed, "the request's extended key usage does not parse")
			}
			if !slices.EqualFunc(oids, []asn1.ObjectIdentifier{oidClientAuth}, asn1.ObjectIdentifier.Equal) {
				return refuse(ReasonKeyUsageNotAllowed, "the request asks for extended key usages %v; edge certificates allow client auth only", oids)
			}
		case e.Id.Equal(oidSubjectAltName):
			return refuse(ReasonExtensionNotAllowed, "the request asks for subject alternative names; edge certificates carry only the common name")
		default:
			return refuse(ReasonExtensionNotAllowed, "the request asks for extension %s", e.Id)
		}
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses)+len(csr.URIs) != 0 {
		return refuse(ReasonExtensionNotAllowed, "the request asks for subject alternative names; edge certificates carry only the common name")
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return refuse(ReasonKeyNotAllowed, "ECDSA keys must be P-256 or P-384")
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 4096 {
			return refuse(ReasonKeyNotAllowed, "RSA keys must have 2048 to 4096 bits, not %d", n)
		}
	case ed25519.PublicKey:
	default:
		return refuse(ReasonKeyNotAllowed, "key type %T is not issued for", csr.PublicKey)
	}
	return nil
}

// tenantOf is the tenant label of an edge CN, "" when it has not four labels.
func tenantOf(cn string) string {
	labels := strings.Split(cn, ".")
	if len(labels) != 4 {
		return ""
	}
	return labels[2]
}

// clip bounds a requester-chosen string in a message.
func clip(s string) string {
	if len(s) > 96 {
		return strings.ToValidUTF8(s[:96], "") + "..."
	}
	return s
}

// Presented is what the manager knows about the certificate that carried a request.
type Presented struct {
	// TenantCA is the tenant's current CA certificate.
	TenantCA *x509.Certificate
	// CommonName is the SyncService's edge identity.
	CommonName string
	// Since is status.edgeIdentitySince (zero when none): certificates
	// issued before it (at second resolution, as the gateway checks) are
	// revoked.
	Since time.Time
	// Now is the manager's clock.
	Now time.Time
}

// Check applies every rule to a recorded request: the presented
// certificate is this service's, issued by the tenant's current CA, valid
// now and not revoked; the proof is the request signed with its key; the
// request carries a new key for exactly its identity. It returns the
// request to sign (only its public key is used), or a *Refusal.
func Check(p Presented, csrPEM, presentedPEM, proof []byte) (*x509.CertificateRequest, error) {
	csr, _, err := ParseRequest(csrPEM)
	if err != nil {
		return nil, err
	}
	cert, err := ParseCertificate(presentedPEM)
	if err != nil {
		return nil, err
	}
	if cert.Subject.CommonName != p.CommonName || cert.CheckSignatureFrom(p.TenantCA) != nil ||
		!slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || cert.IsCA {
		return nil, refuse(ReasonPresentedUntrusted, "the presented certificate (serial %s) is not an edge certificate of %s issued by its tenant's current CA",
			cert.SerialNumber.Text(16), p.CommonName)
	}
	if p.Now.Before(cert.NotBefore) || p.Now.After(cert.NotAfter) {
		return nil, refuse(ReasonPresentedExpired, "the presented certificate (serial %s) is valid from %s to %s, not at %s", cert.SerialNumber.Text(16),
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), p.Now.UTC().Format(time.RFC3339))
	}
	if !p.Since.IsZero() && cert.NotBefore.Unix() < p.Since.Unix() {
		return nil, refuse(ReasonPresentedRevoked, "the presented certificate (serial %s) was issued before the edge identity was issued again at %s",
			cert.SerialNumber.Text(16), p.Since.UTC().Format(time.RFC3339))
	}
	if len(proof) == 0 || len(proof) > MaxProofBytes || verifyProof(cert, csr.Raw, proof) != nil {
		return nil, refuse(ReasonInvalidProof, "the proof is not the request signed with the presented certificate's key")
	}
	if err := CheckRequest(csr, p.CommonName); err != nil {
		return nil, err
	}
	if bytes.Equal(csr.RawSubjectPublicKeyInfo, cert.RawSubjectPublicKeyInfo) {
		return nil, refuse(ReasonKeyReused, "the request carries the presented certificate's key; a renewal needs a new key")
	}
	return csr, nil
}

// VerifyProof checks a proof against the presented certificate, for the
// gateway to refuse junk before recording it (the manager checks again).
func VerifyProof(cert *x509.Certificate, csrDER, proof []byte) error {
	if len(proof) == 0 || len(proof) > MaxProofBytes || verifyProof(cert, csrDER, proof) != nil {
		return refuse(ReasonInvalidProof, "the proof is not the request signed with the presented certificate's key")
	}
	return nil
}

// Accept checks an issued certificate chain (PEM, leaf first) against the
// request it answers: the leaf is for key and carries exactly cn. It
// returns the chain.
func Accept(certPEM []byte, key crypto.Signer, cn string) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("issued chain: unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("issued chain: %w", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("issued chain: no certificate")
	}
	leaf := chain[0]
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding the renewal key's public part: %w", err)
	}
	if !bytes.Equal(leaf.RawSubjectPublicKeyInfo, spki) {
		return nil, errors.New("the issued certificate is not for the key of the request")
	}
	if leaf.Subject.CommonName != cn {
		return nil, fmt.Errorf("the issued certificate names %q, not %q", leaf.Subject.CommonName, cn)
	}
	for i := 1; i < len(chain); i++ {
		if err := chain[i-1].CheckSignatureFrom(chain[i]); err != nil {
			return nil, fmt.Errorf("the issued chain does not verify: %w", err)
		}
	}
	return chain, nil
}

// WriteFiles replaces the certificate and key files atomically, each by a
// temporary file in the same directory renamed over it: the key (mode 0600)
// first, then the certificate. A reader that sees the new key before the
// new certificate finds a mismatched pair and keeps the one it has (see
// mtls.FileSource) until the certificate follows.
func WriteFiles(certFile, keyFile string, certPEM, keyPEM []byte) error {
	if err := writeAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, certPEM, 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	name := tmp.Name()
	defer func() { _ = os.Remove(name) }() // gone after the rename; left only on failure
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}

// Files renews the certificate an edge worker keeps in PEM files: when it
// passes two thirds of its lifetime (ca.RenewAt), or when Trigger asks, it
// makes a new key and a request for the certificate's own common name; when
// the answer carries a certificate for that key, it replaces the files
// (WriteFiles), which mtls.FileSource reads again at the next handshake.
// Connections and streams open at the time keep their certificate. Files is
// safe for concurrent use.
type Files struct {
	// CertFile and KeyFile are the files the worker's identity is read from.
	CertFile, KeyFile string
	// RetryAfter is how long a refused or unanswered request waits before the
	// next one (default 5 minutes).
	RetryAfter time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	pending  *Request
	sentAt   time.Time
	cn       string
	holdTill time.Time
	forced   bool
	wake     chan struct{}
	renewals int
}

func (f *Files) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Files) retryAfter() time.Duration {
	if f.RetryAfter > 0 {
		return f.RetryAfter
	}
	return 5 * time.Minute
}

// Wake is closed when a request should be made now (Trigger, or a request
// refused as a replay); take it again after it fired.
func (f *Files) Wake() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wake == nil {
		f.wake = make(chan struct{})
	}
	return f.wake
}

func (f *Files) wakeLocked() {
	if f.wake != nil {
		close(f.wake)
	}
	f.wake = make(chan struct{})
}

// Trigger asks for a renewal now, due or not.
func (f *Files) Trigger() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forced, f.holdTill = true, time.Time{}
	f.wakeLocked()
}

// Renewals counts the certificates written so far.
func (f *Files) Renewals() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.renewals
}

// current reads the certificate in use and its key.
func (f *Files) current() (*x509.Certificate, crypto.Signer, error) {
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the certificate in use (%s, %s): %w", f.CertFile, f.KeyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the certificate in use (%s): %w", f.CertFile, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("the key in %s cannot sign", f.KeyFile)
	}
	return leaf, signer, nil
}

// Next is the request to send now, or nil: none is due, or one was sent and
// waits for its answer. resend (a new stream) sends the waiting one again,
// as does a wait longer than RetryAfter; the gateway records it once.
func (f *Files) Next(resend bool) (*Request, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.pending != nil {
		if resend || now.Sub(f.sentAt) >= f.retryAfter() {
			f.sentAt = now
			return f.pending, nil
		}
		return nil, nil
	}
	if now.Before(f.holdTill) {
		return nil, nil
	}
	leaf, signer, err := f.current()
	if err != nil {
		return nil, err
	}
	if !f.forced && now.Before(ca.RenewAt(leaf)) {
		return nil, nil
	}
	req, err := NewRequest(signer, leaf.Subject.CommonName)
	if err != nil {
		return nil, err
	}
	f.pending, f.sentAt, f.cn = req, now, leaf.Subject.CommonName
	return req, nil
}

// Answer takes the gateway's answer to the waiting request: a certificate
// for its key and identity replaces the files; a refusal drops the request
// (a replay at once makes a new one; other refusals wait RetryAfter). It
// returns the serial written, or why the answer was not taken.
func (f *Files) Answer(requestID string, issued bool, certPEM []byte, reason, message string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil || (requestID != "" && requestID != f.pending.ID) {
		return "", fmt.Errorf("an answer to request %q, which this worker is not waiting for", clip(requestID))
	}
	req := f.pending
	f.pending, f.forced = nil, false
	if !issued {
		if reason == ReasonReplay {
			f.forced = true
			f.wakeLocked()
		} else {
			f.holdTill = f.now().Add(f.retryAfter())
		}
		return "", &Refusal{Reason: reason, Message: message}
	}
	chain, err := Accept(certPEM, req.Key, f.cn)
	if err != nil {
		f.holdTill = f.now().Add(f.retryAfter())
		return "", err
	}
	if err := WriteFiles(f.CertFile, f.KeyFile, certPEM, req.KeyPEM); err != nil {
		f.holdTill = f.now().Add(f.retryAfter())
		return "", err
	}
	f.renewals++
	return chain[0].SerialNumber.Text(16), nil
}
