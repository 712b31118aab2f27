package controllers

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/platform"
)

// DefaultGatewayCertLifetime is the lifetime of the gateway certificate the
// manager issues (renewed at two thirds).
const DefaultGatewayCertLifetime = 30 * 24 * time.Hour

// dnsNamesAnnotation records the DNS names a gateway certificate holds.
const dnsNamesAnnotation = "integrations.serviceradar.io/dns-names"

// GatewayCertificate keeps the gateway's certificate, when SPIRE does not
// issue it, in a Secret of the operator namespace (tls.crt, tls.key,
// ca.crt) that the gateway mounts: issued by the platform root CA with the
// gateway's SPIFFE ID (SaaS workers authorize it by ID) and the DNS names
// edge workers verify, and renewed at two thirds of its lifetime (the
// gateway reloads the files). A Secret of that name that the operator did
// not create is the user's certificate and is left alone. It runs on the
// leader.
type GatewayCertificate struct {
	// Client writes the Secret; its Secret reads are metadata only.
	Client client.Client
	// Reader, when set, reads the Secret's metadata past the cache (the
	// manager's API reader): a check right after an issuance must see it,
	// or it would issue again. Nil reads through Client.
	Reader client.Reader
	Store  *platform.Store
	// Name of the Secret, in Store.Namespace.
	Name string
	// ID is the gateway's SPIFFE ID; DNSNames the names it serves under.
	ID       spiffeid.ID
	DNSNames []string
	Lifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log logr.Logger
	// Wake, when set, makes the keeper check at once: the bootstrap sends
	// on it when the root CA is re-keyed.
	Wake <-chan event.GenericEvent
}

// NeedLeaderElection makes the certificate keeper run on the leader only.
func (g *GatewayCertificate) NeedLeaderElection() bool { return true }

// Start keeps the certificate until ctx ends: checked at once, again when
// its renewal is due and every few minutes in between (a deleted Secret is
// issued again), retried sooner after errors.
func (g *GatewayCertificate) Start(ctx context.Context) error {
	for {
		next, err := g.Ensure(ctx)
		if err != nil {
			next = 30 * time.Second
			if waitingForBootstrap(err) {
				next = time.Second // the bootstrap is about to check or create the root CA
			} else {
				g.Log.Error(err, "keeping the gateway certificate; retrying", "secret", g.Name)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(next, 5*time.Minute)):
		case <-g.Wake:
		}
	}
}

func (g *GatewayCertificate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// Ensure issues the certificate when it is missing, names another identity
// or other DNS names, or is due for renewal, and returns how long until the
// next renewal.
func (g *GatewayCertificate) Ensure(ctx context.Context) (time.Duration, error) {
	names := slices.Compact(slices.Sorted(slices.Values(slices.DeleteFunc(slices.Clone(g.DNSNames), func(s string) bool { return s == "" }))))
	s := certSecret{Key: types.NamespacedName{Namespace: g.Store.Namespace, Name: g.Name}, Identity: g.ID.String(),
		Want: map[string]string{dnsNamesAnnotation: strings.Join(names, ",")}}
	var reader client.Reader = g.Client
	if g.Reader != nil {
		reader = g.Reader
	}
	m, err := s.read(ctx, reader)
	if err != nil {
		return 0, err
	}
	if m != nil {
		if m.GetLabels()[platform.ManagedByLabel] != platform.ManagedBy {
			g.Log.V(1).Info("the gateway certificate Secret is the user's; leaving it", "secret", s.Key)
			return time.Hour, nil
		}
		if s.Issuer, err = g.Store.RootFingerprint(ctx); err != nil {
			return 0, fmt.Errorf("reading the platform root CA: %w", err)
		}
		if left, ok := s.renewIn(m, g.now()); ok {
			return left, nil
		}
	}
	root, err := g.Store.RootCA(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the platform root CA: %w", err)
	}
	lifetime := g.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultGatewayCertLifetime
	}
	sans := ca.ServerNames{SPIFFEID: g.ID}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			sans.IPs = append(sans.IPs, ip) // a local run reaches the gateway by address
		} else {
			sans.DNSNames = append(sans.DNSNames, n)
		}
	}
	issued, err := root.IssueServer(sans, lifetime)
	if err != nil {
		return 0, fmt.Errorf("issuing the gateway certificate: %w", err)
	}
	s.Issuer = identity.KeyFingerprint(root.Cert)
	renewAt, err := s.write(ctx, g.Client, issuedSecret{Issued: issued, CA: root, Type: corev1.SecretTypeTLS,
		Labels: map[string]string{platform.ManagedByLabel: platform.ManagedBy, platform.ComponentLabel: "gateway"}})
	if err != nil {
		return 0, err
	}
	g.Log.Info("issued the gateway certificate", "secret", s.Key, "spiffeID", g.ID.String(), "dnsNames", names,
		"renewAt", renewAt.UTC().Format(time.RFC3339))
	return renewAt.Sub(g.now()), nil
}
