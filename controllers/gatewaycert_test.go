package controllers_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/platform"
)

// Without SPIRE the manager keeps the gateway's certificate in a Secret:
// issued by the platform root with the gateway's SPIFFE ID and DNS names,
// left as it is until renewal is due, issued again when due or when the
// names change, and never written over when the user provides the Secret.
func TestGatewayCertificate(t *testing.T) {
	ctx := context.Background()
	withTLS := opts
	withTLS.GatewayTLSSecret = "sync-gateway-tls"
	withTLS.GatewayServerName = "sync-gateway.serviceradar-system.svc"
	withTLS.GatewayDNSNames = []string{"gateway.example.com"}
	m := startManager(t, withTLS)
	sec := &corev1.Secret{}
	waitFor(t, "the gateway certificate Secret", func() error {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "sync-gateway-tls"}, sec)
	})
	m.stop()

	store := &platform.Store{Client: env.Client, Reader: env.Client, Namespace: operatorNS}
	root, err := store.RootCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := controllers.GatewaySPIFFEID(spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain), "platform")
	if err != nil {
		t.Fatal(err)
	}
	// The edge address's host is on it too.
	leaf := checkGatewaySecret(t, sec, root.Cert, id, "sync-gateway.serviceradar-system.svc", "gateway.example.com", "sync.platform.example")

	now := time.Now()
	keeper := &controllers.GatewayCertificate{Client: env.Client, Store: store, Name: "sync-gateway-tls", ID: id,
		DNSNames: withTLS.GatewayDNSNames, Now: func() time.Time { return now }, Log: testr.New(t)}
	keeper.DNSNames = append(keeper.DNSNames, withTLS.GatewayServerName, "sync.platform.example")
	next, err := keeper.Ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(sec), again); err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != sec.ResourceVersion || next < 15*24*time.Hour {
		t.Fatalf("a valid certificate was written again (rv %s -> %s) or renewal is due in %s", sec.ResourceVersion, again.ResourceVersion, next)
	}

	for _, step := range []struct {
		name  string
		later time.Duration
		names []string
	}{
		{"renewal due", 21 * 24 * time.Hour, keeper.DNSNames},
		{"names changed", 21 * 24 * time.Hour, []string{"sync-gateway.serviceradar-system.svc", "gw.example.org"}},
	} {
		now = time.Now().Add(step.later)
		keeper.DNSNames = step.names
		if _, err := keeper.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		renewed := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(sec), renewed); err != nil {
			t.Fatal(err)
		}
		got := checkGatewaySecret(t, renewed, root.Cert, id, step.names...)
		if got.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			t.Fatalf("%s: the certificate was not issued again", step.name)
		}
		leaf = got
	}

	// The user's own Secret (from cert-manager, say) is never touched.
	user := &corev1.Secret{Type: corev1.SecretTypeTLS}
	user.Name, user.Namespace = "user-gateway-tls", operatorNS
	user.Data = map[string][]byte{corev1.TLSCertKey: []byte("theirs"), corev1.TLSPrivateKeyKey: []byte("theirs")}
	if err := env.Client.Create(ctx, user); err != nil {
		t.Fatal(err)
	}
	keeper.Name = user.Name
	if _, err := keeper.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	after := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(user), after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != user.ResourceVersion || string(after.Data[corev1.TLSCertKey]) != "theirs" {
		t.Fatal("the user's gateway certificate Secret was written over")
	}
}

// checkGatewaySecret verifies the Secret holds a key pair whose certificate
// chains to root for every name, carries id and classifies as a gateway.
func checkGatewaySecret(t *testing.T, sec *corev1.Secret, root *x509.Certificate, id spiffeid.ID, names ...string) *x509.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatalf("Secret %s: %v", sec.Name, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(sec.Data["ca.crt"]) || sec.Type != corev1.SecretTypeTLS {
		t.Fatalf("Secret %s: type %s, ca.crt unusable", sec.Name, sec.Type)
	}
	for _, name := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Fatalf("certificate for %s: %v", name, err)
		}
	}
	if err := leaf.CheckSignatureFrom(root); err != nil {
		t.Fatalf("not issued by the platform root: %v", err)
	}
	classifier, _ := identity.NewClassifier("", "")
	got, err := classifier.Classify([]*x509.Certificate{leaf})
	if err != nil || got.ComponentType != identity.ComponentGateway || got.SPIFFEID != id {
		t.Fatalf("certificate classifies as %+v (%v), want gateway %s", got, err, id)
	}
	return leaf
}
