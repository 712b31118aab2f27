// Package edgerenewal_test renews an edge worker's certificate over its
// ControlStream on the real stack: kube-apiserver and etcd, the manager with
// its shipped RBAC (which alone holds the tenant CA and signs), the gateway
// with its shipped RBAC over real mTLS (which relays and records), and the
// worker process started from the onboarding bundle the manager rendered.
// Then it tries every hostile request it can think of, over the stream as an
// edge holding a valid certificate, and written straight to status as a
// compromised gateway could: none is signed.
package edgerenewal_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	gwapp "github.com/serviceradar/sync-operator/gateway/app"
	"github.com/serviceradar/sync-operator/gateway/server"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/mtls"
	"github.com/serviceradar/sync-operator/identity/renewal"
	"github.com/serviceradar/sync-operator/platform"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/pgtest"
	"github.com/serviceradar/sync-operator/test/pkitest"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workers/app"
)

const (
	operatorNS = "serviceradar-system"
	slug       = "acme"
	siteName   = "site-a"
	// edgeLifetime is long enough that no renewal falls due by itself
	// during the test (certificates are back-dated 5 minutes): every
	// renewal here is asked for.
	edgeLifetime = time.Hour
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// stack is the system under test.
type stack struct {
	c, gateway client.Client
	ns, gwAddr string
	store      *platform.Store
	cn         string
	dir        string
	// bundle is the onboarding bundle as first rendered: the edge's
	// original certificate and key.
	bundleCert *x509.Certificate
	bundleKey  crypto.Signer
	bundlePEM  []byte
}

func startStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		t.Fatal(err)
	}
	managerUser, err := env.UserWithRoles(ctx, "manager", "config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gatewayUser, err := env.UserWithRoles(ctx, "system:serviceaccount:"+operatorNS+":sync-gateway", "config/rbac/gateway/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gatewayClient, err := client.New(gatewayUser.Config(), client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewDatabase(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwAddr := l.Addr().String()
	_ = l.Close()

	skip := true
	mgr, err := ctrl.NewManager(managerUser.Config(), ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: ctrlconfig.Controller{SkipNameValidation: &skip}, Logger: testr.New(t).WithName("manager")})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	if err := controllers.Setup(mctx, mgr, controllers.Options{Namespace: operatorNS, PlatformSlug: identity.DefaultPlatformSlug,
		GatewayAddress: gwAddr, EdgeGatewayAddress: gwAddr, EdgeLifetime: edgeLifetime,
		TrustDomain: spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain), GatewayServiceAccount: "sync-gateway"}); err != nil {
		t.Fatal(err)
	}
	mdone := make(chan error, 1)
	go func() { mdone <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		mcancel()
		if err := <-mdone; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	st := &platform.Store{Client: c, Reader: c, Namespace: operatorNS}
	dir := t.TempDir()
	var gwFiles pkitest.Files
	test.Eventually(t, "the platform root CA", time.Minute, func() bool {
		if c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: platform.RootCASecret}, &corev1.Secret{}) != nil {
			return false
		}
		root, err := st.RootCA(ctx)
		if err != nil {
			t.Fatal(err)
		}
		svid, err := root.IssueSVID(spiffeid.RequireFromString("spiffe://serviceradar.local/gateway/platform/default/gateway"), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		gwFiles = pkitest.Write(t, filepath.Join(dir, "gateway"), svid, root.Cert)
		return true
	})
	gctx, gcancel := context.WithCancel(ctx)
	ready, gdone := make(chan string, 1), make(chan error, 1)
	go func() {
		gdone <- gwapp.Run(gctx, gwapp.Config{Kube: gatewayUser.Config(), Listen: gwAddr, CertFile: gwFiles.Cert, KeyFile: gwFiles.Key,
			CAFile: gwFiles.CA, GatewayID: "gw", PostgresDSN: dsn, DeviceCacheEntries: store.DefaultCacheEntries, Log: testr.New(t).WithName("gateway"), Ready: func(a string) { ready <- a }})
	}()
	select {
	case <-ready:
	case err := <-gdone:
		t.Fatalf("gateway: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("gateway did not start")
	}
	t.Cleanup(func() {
		gcancel()
		if err := <-gdone; err != nil {
			t.Errorf("gateway: %v", err)
		}
	})

	// A tenant with an OnPrem SyncService, as a tenant admin declares it.
	if err := c.Create(ctx, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}}); err != nil {
		t.Fatal(err)
	}
	ns, err := env.TenantNamespace(ctx, slug, slug)
	if err != nil {
		t.Fatal(err)
	}
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: siteName},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "default"}}
	if err := c.Create(ctx, ss); err != nil {
		t.Fatal(err)
	}
	s := &stack{c: c, gateway: gatewayClient, ns: ns, gwAddr: gwAddr, store: st, dir: dir}
	s.cn, _ = identity.FormatCommonName(siteName, "default", slug)
	sec := s.onboarding(t)
	s.bundlePEM = sec.Data[corev1.TLSCertKey]
	s.bundleCert, s.bundleKey = parsePair(t, sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	return s
}

// onboarding waits for the SyncService's onboarding Secret.
func (s *stack) onboarding(t *testing.T) *corev1.Secret {
	t.Helper()
	sec := &corev1.Secret{}
	test.Eventually(t, "the onboarding bundle", time.Minute, func() bool {
		return s.c.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: siteName + "-onboarding"}, sec) == nil
	})
	return sec
}

func parsePair(t *testing.T, certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key.Signer()
}

// syncService is the SyncService as the API server has it now.
func (s *stack) syncService(t *testing.T) *v1alpha1.SyncService {
	t.Helper()
	ss := &v1alpha1.SyncService{}
	if err := s.c.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: siteName}, ss); err != nil {
		t.Fatal(err)
	}
	return ss
}

// answer waits for the manager's answer to the request id recorded at (or
// any recording, when at is zero).
func (s *stack) answer(t *testing.T, id string) *v1alpha1.EdgeCertificateRenewal {
	t.Helper()
	var ans *v1alpha1.EdgeCertificateRenewal
	test.Eventually(t, "the manager's answer to request "+id, time.Minute, func() bool {
		ss := s.syncService(t)
		req, a := ss.Status.CertificateRequest, ss.Status.CertificateRenewal
		if req == nil || a == nil || a.RequestID != id || req.ID != id || a.RequestedAt.UnixMicro() != req.RequestedAt.UnixMicro() {
			return false
		}
		ans = a
		return true
	})
	return ans
}

// serials are the serials of status.edgeCertificates.
func serials(ss *v1alpha1.SyncService) []string {
	var out []string
	for _, c := range ss.Status.EdgeCertificates {
		out = append(out, c.Serial)
	}
	return out
}

// edgeClient is a client with an edge certificate and key (written to dir).
func (s *stack) edgeClient(t *testing.T, dir string, certPEM []byte, key crypto.Signer) pb.AgentGatewayServiceClient {
	t.Helper()
	root, err := s.store.RootCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"tls.crt": certPEM, "tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "ca.crt": root.CertPEM()}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	classifier, _ := identity.NewClassifier("", "")
	src, err := mtls.NewFileSource(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt"), classifier.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.gwAddr, grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(mtls.Verifier{Classifier: classifier, Source: src}, mtls.ServerExpectation{}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewAgentGatewayServiceClient(conn)
}

// requestOverStream sends one certificate request on a new ControlStream
// and returns the answer the gateway sends on it.
func requestOverStream(t *testing.T, gw pb.AgentGatewayServiceClient, csrPEM, proof []byte) *pb.CertificateRenewal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := gw.ControlStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: siteName, Partition: "default"}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CertificateRequest{CertificateRequest: &pb.CertificateSigningRequest{
		CsrPem: csrPEM, Proof: proof, Timestamp: time.Now().Unix(),
	}}}); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := st.Recv()
		if err != nil {
			t.Fatalf("waiting for the answer on the control stream: %v", err)
		}
		if ans := msg.GetCertificateRenewal(); ans != nil {
			return ans
		}
	}
}

// csr builds a request from tmpl for key, and its proof made with proveWith.
func csr(t *testing.T, tmpl *x509.CertificateRequest, key, proveWith crypto.Signer) (csrPEM, proof []byte, id string) {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	proof, err = renewal.Prove(proveWith, der)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), proof, renewal.RequestID(der)
}

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func extension(t *testing.T, oid asn1.ObjectIdentifier, v any) pkix.Extension {
	t.Helper()
	der, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oid, Value: der}
}

// record writes a certificate request to status as the gateway does, with
// the gateway's own credentials: what a compromised gateway could write.
func (s *stack) record(t *testing.T, csrPEM, presentedPEM, proof []byte, id string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"certificateRequest": map[string]any{
		"id": id, "csr": string(csrPEM), "presentedCertificate": string(presentedPEM),
		"proof": base64.StdEncoding.EncodeToString(proof), "requestedAt": metav1.NewMicroTime(time.Now()),
	}}}}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("SyncService")
	u.SetNamespace(s.ns)
	u.SetName(siteName)
	if err := s.gateway.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(server.RenewalFieldOwner), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

// event reports whether the manager recorded an event with this reason
// whose note contains text.
func (s *stack) event(t *testing.T, reason, text string) bool {
	t.Helper()
	var list eventsv1.EventList
	if err := s.c.List(context.Background(), &list, client.InNamespace(s.ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Name == siteName && strings.Contains(e.Note, text) {
			return true
		}
	}
	return false
}

// logLines collects the worker's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

func (l *logLines) count(text string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, text) {
			n++
		}
	}
	return n
}

func TestEdgeCertificateSelfRenewal(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()

	// The worker at the edge runs from the bundle's files alone.
	sec := s.onboarding(t)
	wdir := filepath.Join(s.dir, "edge")
	if err := os.MkdirAll(wdir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt"} {
		if err := os.WriteFile(filepath.Join(wdir, name), sec.Data[name], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	boot, err := bootstrap.Parse(sec.Data["config.json"])
	if err != nil {
		t.Fatal(err)
	}
	serverName := boot.Identity.ServerName
	boot.Identity = bootstrap.FileIdentity(wdir)
	boot.Identity.ServerName = serverName
	raw, _ := boot.JSON()
	bootFile := filepath.Join(wdir, "config.json")
	if err := os.WriteFile(bootFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	renew := make(chan struct{})
	wctx, wcancel := context.WithCancel(ctx)
	ready, wdone := make(chan struct{}), make(chan error, 1)
	go func() {
		wdone <- app.Run(wctx, app.Config{BootstrapFile: bootFile, Version: "edge", Log: logs.logger(), RenewCertificate: renew,
			Ready: func() { close(ready) }})
	}()
	t.Cleanup(func() {
		wcancel()
		if err := <-wdone; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-wdone:
		t.Fatalf("worker: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the edge worker got no configuration")
	}

	var renewedSerial string
	t.Run("the worker renews its certificate over its control stream", func(t *testing.T) {
		test.Eventually(t, "the worker's control stream", time.Minute, func() bool { return logs.count("pushed config") > 0 || logs.count("configuration applied") > 0 })
		streamsBefore := logs.count("control stream ended")
		oldCert, _ := parsePair(t, mustRead(t, filepath.Join(wdir, "tls.crt")), mustRead(t, filepath.Join(wdir, "tls.key")))
		start := time.Now()
		renew <- struct{}{}
		var newCert *x509.Certificate
		test.Eventually(t, "the renewed certificate in the worker's files", time.Minute, func() bool {
			c, err := tryParse(filepath.Join(wdir, "tls.crt"), filepath.Join(wdir, "tls.key"))
			if err != nil || c.SerialNumber.Cmp(oldCert.SerialNumber) == 0 {
				return false
			}
			newCert = c
			return true
		})
		t.Logf("renewal round trip (request on the stream, recorded, signed by the manager, pushed back, files written): %s", time.Since(start))

		// Exactly the identity, a new key, the edge template, the tenant's CA.
		tca, err := s.store.TenantCA(ctx, slug)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case newCert.Subject.CommonName != s.cn:
			t.Errorf("CN %q, want %q", newCert.Subject.CommonName, s.cn)
		case bytes.Equal(newCert.RawSubjectPublicKeyInfo, oldCert.RawSubjectPublicKeyInfo):
			t.Error("the renewed certificate has the old key")
		case newCert.CheckSignatureFrom(tca.Cert) != nil:
			t.Error("the renewed certificate is not signed by the tenant CA")
		case newCert.IsCA || len(newCert.ExtKeyUsage) != 1 || newCert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth ||
			newCert.KeyUsage&^(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyAgreement) != 0:
			t.Errorf("usage: CA %v, ext %v, key usage %v", newCert.IsCA, newCert.ExtKeyUsage, newCert.KeyUsage)
		case newCert.NotAfter.Sub(newCert.NotBefore) > edgeLifetime+10*time.Minute:
			t.Errorf("lifetime %s, more than the edge lifetime", newCert.NotAfter.Sub(newCert.NotBefore))
		case len(newCert.DNSNames)+len(newCert.URIs)+len(newCert.IPAddresses) != 0:
			t.Error("the renewed certificate has SANs")
		}
		if fi, err := os.Stat(filepath.Join(wdir, "tls.key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v, %v", fi.Mode().Perm(), err)
		}
		// Status, condition, event and metric.
		serial := newCert.SerialNumber.Text(16)
		ss := s.syncService(t)
		ans := ss.Status.CertificateRenewal
		if ans == nil || !ans.Issued || ans.Serial != serial || ans.NotAfter == nil || !ans.NotAfter.Equal(&metav1.Time{Time: newCert.NotAfter}) {
			t.Errorf("status.certificateRenewal %+v, want the issued serial %s", ans, serial)
		}
		// (Newest first by NotBefore, at second resolution: the bundle's
		// certificate, issued in the same second here, may stay first.)
		if got := serials(ss); !slices.Contains(got, serial) {
			t.Errorf("status.edgeCertificates %v, want %s among them", got, serial)
		}
		cond := findCondition(ss, v1alpha1.ConditionCertificateRenewal)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != renewal.ReasonIssued {
			t.Errorf("condition %+v", cond)
		}
		test.Eventually(t, "the CertificateRenewed event", 30*time.Second, func() bool { return s.event(t, "CertificateRenewed", serial) })
		// Its expiry is exported by the gateway from this status
		// (sync_edge_certificate_expiry_timestamp_seconds; test/e2e TestEventsAndMetrics).
		// The worker's streams stayed up: none ended since.
		if n := logs.count("control stream ended"); n != streamsBefore {
			t.Errorf("the control stream was reconnected %d times during the renewal", n-streamsBefore)
		}
		// A new connection presents the new certificate, and it is served.
		gw := s.edgeClient(t, filepath.Join(s.dir, "renewed"), mustRead(t, filepath.Join(wdir, "tls.crt")), mustKey(t, filepath.Join(wdir, "tls.key")))
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if resp, err := gw.Hello(hctx, &pb.AgentHelloRequest{AgentId: siteName, Partition: "default"}); err != nil || !resp.GetAccepted() {
			t.Fatalf("Hello with the renewed certificate: %v %v", resp, err)
		}
		renewedSerial = serial
	})

	// An edge holding a valid certificate (the bundle's), asking over its
	// stream for what it must not get.
	gw := s.edgeClient(t, filepath.Join(s.dir, "attacker"), s.bundlePEM, s.bundleKey)
	other := func(cn string) *x509.CertificateRequest {
		return &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	}
	for _, tc := range []struct {
		name   string
		tmpl   *x509.CertificateRequest
		key    crypto.Signer // nil: a new one
		reason string
	}{
		{"another component's CN", other("site-b.default.acme.serviceradar"), nil, renewal.ReasonIdentityMismatch},
		{"another partition's CN", other("site-a.dmz.acme.serviceradar"), nil, renewal.ReasonIdentityMismatch},
		{"another tenant's CN", other("site-a.default.globex.serviceradar"), nil, renewal.ReasonTenantMismatch},
		{"a CA flag", &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}, ExtraExtensions: []pkix.Extension{
			extension(t, asn1.ObjectIdentifier{2, 5, 29, 19}, struct {
				IsCA bool `asn1:"optional"`
			}{true}),
		}}, nil, renewal.ReasonCARequested},
		{"server auth", &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}, ExtraExtensions: []pkix.Extension{
			extension(t, asn1.ObjectIdentifier{2, 5, 29, 37}, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}}),
		}}, nil, renewal.ReasonKeyUsageNotAllowed},
		{"certificate signing key usage", &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}, ExtraExtensions: []pkix.Extension{
			extension(t, asn1.ObjectIdentifier{2, 5, 29, 15}, asn1.BitString{Bytes: []byte{0x84}, BitLength: 6}), // digitalSignature, keyCertSign
		}}, nil, renewal.ReasonKeyUsageNotAllowed},
		{"a DNS name", &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}, DNSNames: []string{"gateway.example"}}, nil, renewal.ReasonExtensionNotAllowed},
		{"an extra subject attribute", &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn, Organization: []string{"ServiceRadar"}}}, nil, renewal.ReasonIdentityMismatch},
		{"the presented certificate's own key", other(s.cn), s.bundleKey, renewal.ReasonKeyReused},
	} {
		t.Run("over the stream, refused: "+tc.name, func(t *testing.T) {
			before := serials(s.syncService(t))
			key := tc.key
			if key == nil {
				key = newKey(t)
			}
			csrPEM, proof, id := csr(t, tc.tmpl, key, s.bundleKey)
			ans := requestOverStream(t, gw, csrPEM, proof)
			if ans.GetIssued() || ans.GetReason() != tc.reason || len(ans.GetCertificatePem()) != 0 {
				t.Fatalf("answer %v, want refused %s", ans, tc.reason)
			}
			checkRefused(t, s, id, tc.reason, before)
		})
	}

	t.Run("over the stream, refused: a replay of an answered request", func(t *testing.T) {
		csrPEM, proof, id := csr(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}}, newKey(t), s.bundleKey)
		first := requestOverStream(t, gw, csrPEM, proof)
		if !first.GetIssued() {
			t.Fatalf("the first request was refused: %v", first)
		}
		before := serials(s.syncService(t))
		again := requestOverStream(t, gw, csrPEM, proof)
		if again.GetIssued() || again.GetReason() != renewal.ReasonReplay {
			t.Fatalf("replay answered %v", again)
		}
		checkRefused(t, s, id, renewal.ReasonReplay, before)
	})

	// Every request above was reconciled: the certificate the worker renewed
	// is still reported (and still accepted).
	if got := serials(s.syncService(t)); renewedSerial == "" || !slices.Contains(got, renewedSerial) {
		t.Errorf("status.edgeCertificates %v lost the worker's renewed certificate %s", got, renewedSerial)
	}

	// A compromised gateway can write requests to status (its RBAC allows
	// it), but without an edge's key it cannot have one signed.
	tca, err := s.store.TenantCA(ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	expiredAuthority := &ca.Authority{Issued: tca.Issued, Now: func() time.Time { return time.Now().Add(-3 * time.Hour) }}
	expired, err := expiredAuthority.IssueEdgeClient(siteName, "default", slug, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignRoot, _ := ca.NewRoot("foreign", 0, nil)
	foreignCA, _ := foreignRoot.NewTenantCA(slug, 0)
	foreign, err := foreignCA.IssueEdgeClient(siteName, "default", slug, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		presented []byte
		proveWith crypto.Signer
		reason    string
	}{
		{"a request the gateway made up (no edge's proof)", s.bundlePEM, newKey(t), renewal.ReasonInvalidProof},
		{"an expired presenting certificate", expired.CertPEM(), expired.Key.Signer(), renewal.ReasonPresentedExpired},
		{"a presenting certificate of another CA", foreign.CertPEM(), foreign.Key.Signer(), renewal.ReasonPresentedUntrusted},
	} {
		t.Run("written to status, refused: "+tc.name, func(t *testing.T) {
			before := serials(s.syncService(t))
			csrPEM, proof, id := csr(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}}, newKey(t), tc.proveWith)
			s.record(t, csrPEM, leafPEM(t, tc.presented), proof, id)
			checkRefused(t, s, id, tc.reason, before)
		})
	}

	t.Run("a paused SyncService renews nothing", func(t *testing.T) {
		patch := []byte(`{"spec":{"paused":true}}`)
		if err := s.c.Patch(ctx, s.syncService(t), client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
		defer func() {
			patch := []byte(`{"spec":{"paused":false}}`)
			if err := s.c.Patch(ctx, s.syncService(t), client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Error(err)
			}
		}()
		before := serials(s.syncService(t))
		csrPEM, proof, _ := csr(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}}, newKey(t), s.bundleKey)
		// The gateway refuses it on the stream (once its cache has the pause).
		test.Eventually(t, "the gateway refusing a paused SyncService's request", 30*time.Second, func() bool {
			ans := requestOverStream(t, gw, csrPEM, proof)
			if ans.GetIssued() {
				t.Fatalf("a paused SyncService's request was signed: %v", ans)
			}
			return ans.GetReason() == renewal.ReasonNotServed
		})
		// And the manager refuses it written to status.
		csrPEM, proof, id := csr(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}}, newKey(t), s.bundleKey)
		s.record(t, csrPEM, leafPEM(t, s.bundlePEM), proof, id)
		checkRefused(t, s, id, renewal.ReasonNotServed, before)
	})

	t.Run("a revoked presenting certificate renews nothing", func(t *testing.T) {
		// Deleting the onboarding Secret issues a fresh identity: the
		// bundle's certificate and every one renewed from it are revoked.
		since := s.syncService(t).Status.EdgeIdentitySince
		if err := s.c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: siteName + "-onboarding"}}); err != nil {
			t.Fatal(err)
		}
		test.Eventually(t, "a fresh edge identity", time.Minute, func() bool {
			now := s.syncService(t).Status.EdgeIdentitySince
			return now != nil && (since == nil || now.After(since.Time))
		})
		before := serials(s.syncService(t))
		csrPEM, proof, _ := csr(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}}, newKey(t), s.bundleKey)
		// The gateway refuses the revoked certificate: the stream itself, or
		// the request on it.
		test.Eventually(t, "the gateway refusing the revoked certificate", 30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			st, err := gw.ControlStream(ctx)
			if err != nil {
				return false
			}
			_ = st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: &pb.ControlStreamHello{AgentId: siteName}}})
			_ = st.Send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CertificateRequest{CertificateRequest: &pb.CertificateSigningRequest{CsrPem: csrPEM, Proof: proof}}})
			for {
				msg, err := st.Recv()
				if err != nil {
					return strings.Contains(err.Error(), "revoked") // the stream itself is refused
				}
				if ans := msg.GetCertificateRenewal(); ans != nil {
					if ans.GetIssued() {
						t.Fatalf("a revoked certificate's request was signed: %v", ans)
					}
					return ans.GetReason() == renewal.ReasonPresentedRevoked
				}
			}
		})
		// Written to status, the manager refuses it too.
		csrPEM, proof, id := csr(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn}}, newKey(t), s.bundleKey)
		s.record(t, csrPEM, leafPEM(t, s.bundlePEM), proof, id)
		checkRefused(t, s, id, renewal.ReasonPresentedRevoked, before)
	})
}

// checkRefused waits for the manager's refusal of request id and checks
// that nothing was signed: no certificate in the answer, the condition and
// event name the reason, and status.edgeCertificates is what it was.
func checkRefused(t *testing.T, s *stack, id, reason string, before []string) {
	t.Helper()
	ans := s.answer(t, id)
	if ans.Issued || ans.Reason != reason || ans.Certificate != "" || ans.Serial != "" {
		t.Fatalf("answer %+v, want refused %s", ans, reason)
	}
	ss := s.syncService(t)
	cond := findCondition(ss, v1alpha1.ConditionCertificateRenewal)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != reason {
		t.Errorf("condition %+v, want False %s", cond, reason)
	}
	for _, serial := range serials(ss) {
		found := false
		for _, b := range before {
			found = found || b == serial
		}
		if !found {
			t.Errorf("status.edgeCertificates gained %s: a refused request was signed", serial)
		}
	}
	test.Eventually(t, "the CertificateRenewalRefused event", 30*time.Second, func() bool { return s.event(t, "CertificateRenewalRefused", reason) })
}

func findCondition(ss *v1alpha1.SyncService, typ string) *metav1.Condition {
	for i := range ss.Status.Conditions {
		if ss.Status.Conditions[i].Type == typ {
			return &ss.Status.Conditions[i]
		}
	}
	return nil
}

// leafPEM is the first certificate of a PEM chain.
func leafPEM(t *testing.T, chain []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(chain)
	if block == nil {
		t.Fatal("no certificate")
	}
	return pem.EncodeToMemory(block)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	k, err := ca.ParseKeyPEM(mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return k.Signer()
}

// tryParse reads a certificate and key pair as the worker's file source
// would: an error while they do not match (between the two renames).
func tryParse(certFile, keyFile string) (*x509.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("no certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := ca.ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(k.Signer().Public())
	if err != nil || !bytes.Equal(der, c.RawSubjectPublicKeyInfo) {
		return nil, errors.New("the pair does not match yet")
	}
	return c, nil
}
