package controllers_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workload"
)

var ssOpts = controllers.Options{
	Namespace: operatorNS, PlatformSlug: "platform", PlatformSync: true,
	GatewayAddress: "sync-gateway.serviceradar-system.svc:50052", GatewayServerName: "sync-gateway.serviceradar-system.svc",
	EdgeGatewayAddress: edgeGatewayAddress, WorkerImage: "registry.example/sync-operator:test",
}

func faker(name, ns string, ref v1alpha1.SyncServiceReference) *v1alpha1.IntegrationSource {
	return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, SyncServiceRef: ref}}
}

func getObj(c client.Client, obj client.Object, ns, name string) func() error {
	return func() error {
		return c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
	}
}

func rootPool(t *testing.T, c client.Client) *x509.CertPool {
	t.Helper()
	sec := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: operatorNS, Name: platform.RootCASecret}, sec); err != nil {
		t.Fatal(err)
	}
	certs, err := ca.ParseCertificatesPEM(sec.Data[corev1.TLSCertKey])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(certs[0])
	return pool
}

func TestSaaSWorkersPerTenant(t *testing.T) {
	ctx := context.Background()
	startManager(t, ssOpts)
	// Tenants of their own: other tests leave sources of acme and globex behind.
	for _, slug := range []string{"hooli", "initech"} {
		mustCreate(t, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}})
	}
	acmeNS, globexNS := tenantNamespace(t, "hooli"), tenantNamespace(t, "initech")
	ref := v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}
	mustCreate(t, faker("lab", acmeNS, ref), faker("lab", globexNS, ref))

	for _, slug := range []string{"hooli", "initech"} {
		name := workload.Name("sync", controllers.PlatformSyncName, slug)
		dep := &appsv1.Deployment{}
		waitFor(t, "Deployment "+name, getObj(env.Client, dep, operatorNS, name))
		pod := dep.Spec.Template.Spec
		c := pod.Containers[0]
		sc := c.SecurityContext
		checks := map[string]bool{
			"image from --worker-image":      c.Image == ssOpts.WorkerImage,
			"non-root pod":                   pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot,
			"seccomp RuntimeDefault":         pod.SecurityContext.SeccompProfile != nil && pod.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault,
			"read-only root filesystem":      sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
			"no privilege escalation":        sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
			"all capabilities dropped":       sc.Capabilities != nil && len(sc.Capabilities.Drop) == 1 && sc.Capabilities.Drop[0] == "ALL",
			"resource requests and limits":   c.Resources.Requests.Cpu().MilliValue() > 0 && c.Resources.Limits.Memory().Value() > 0,
			"no service account token":       pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken,
			"own service account":            pod.ServiceAccountName == name,
			"owned by the SyncService":       len(dep.OwnerReferences) == 1 && dep.OwnerReferences[0].Name == controllers.PlatformSyncName,
			"SVID Secret mounted (no SPIRE)": volumeSecret(pod, "identity") == workload.Name("sync", controllers.PlatformSyncName, slug, "svid"),
			"one pod at a time (Recreate)":   dep.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType,
		}
		for what, ok := range checks {
			if !ok {
				t.Errorf("%s: %s does not hold", name, what)
			}
		}
		cm := &corev1.ConfigMap{}
		waitFor(t, "ConfigMap "+name, getObj(env.Client, cm, operatorNS, name))
		var boot bootstrap.Config
		if err := json.Unmarshal([]byte(cm.Data[bootstrap.FileName]), &boot); err != nil {
			t.Fatal(err)
		}
		wantID := "spiffe://serviceradar.local/sync/" + slug + "/default/platform-sync-" + slug
		if boot.GatewayAddress != ssOpts.GatewayAddress || boot.ComponentID != "platform-sync-"+slug || boot.Identity.SPIFFEID != wantID ||
			boot.Identity.Source != bootstrap.IdentityFiles {
			t.Errorf("bootstrap %+v", boot)
		}
		sa := &corev1.ServiceAccount{}
		waitFor(t, "ServiceAccount "+name, getObj(env.Client, sa, operatorNS, name))
		sec := &corev1.Secret{}
		waitFor(t, "SVID Secret", getObj(env.Client, sec, operatorNS, workload.Name("sync", controllers.PlatformSyncName, slug, "svid")))
		certs, err := ca.ParseCertificatesPEM(sec.Data[corev1.TLSCertKey])
		if err != nil {
			t.Fatal(err)
		}
		if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != wantID {
			t.Errorf("SVID URIs %v, want %s", certs[0].URIs, wantID)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: rootPool(t, env.Client), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("SVID does not chain to the platform root: %v", err)
		}
	}
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: controllers.PlatformSyncName}}
	waitFor(t, "status.workers of platform-sync", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ss), ss); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(ss.Status.Conditions, v1alpha1.ConditionReady)
		if len(ss.Status.Workers) < 2 || ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("workers %v ready %v", ss.Status.Workers, ready)
		}
		if !strings.Contains(ready.Message, "ClusterSPIFFEID CRD is not installed") {
			return fmt.Errorf("Ready message does not report the missing SPIRE CRD: %q", ready.Message)
		}
		return nil
	})

	t.Run("a tenant with no sources left loses its worker", func(t *testing.T) {
		if err := env.Client.Delete(ctx, faker("lab", globexNS, ref)); err != nil {
			t.Fatal(err)
		}
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.ConfigMap{}, &corev1.ServiceAccount{}, &corev1.Secret{}} {
			name := workload.Name("sync", controllers.PlatformSyncName, "initech")
			if _, ok := obj.(*corev1.Secret); ok {
				name = workload.Name("sync", controllers.PlatformSyncName, "initech", "svid")
			}
			waitFor(t, fmt.Sprintf("%T %s deleted", obj, name), func() error {
				err := env.Client.Get(ctx, types.NamespacedName{Namespace: operatorNS, Name: name}, obj)
				if apierrors.IsNotFound(err) {
					return nil
				}
				return errors.New("still there")
			})
		}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: operatorNS, Name: workload.Name("sync", controllers.PlatformSyncName, "hooli")}, &appsv1.Deployment{}); err != nil {
			t.Fatalf("hooli's worker went too: %v", err)
		}
	})

	t.Run("a paused SyncService changes nothing", func(t *testing.T) {
		paused := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "frozen", Namespace: acmeNS}, Spec: v1alpha1.SyncServiceSpec{Paused: true}}
		mustCreate(t, paused)
		mustCreate(t, faker("frozen-src", acmeNS, v1alpha1.SyncServiceReference{Name: "frozen"}))
		waitFor(t, "frozen Ready/Paused", readyIs(paused, func() []metav1.Condition { return paused.Status.Conditions },
			func() int64 { return paused.Generation }, metav1.ConditionTrue, v1alpha1.ReasonPaused))
		time.Sleep(time.Second)
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: acmeNS, Name: workload.Name("sync", "frozen", "hooli")}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Fatalf("a paused SyncService got a worker: %v", err)
		}
		if err := env.Client.Patch(ctx, paused, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":false}}`))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "worker after unpausing", getObj(env.Client, &appsv1.Deployment{}, acmeNS, workload.Name("sync", "frozen", "hooli")))
	})

	// v1alpha1.MayServe decides here as for the sources' Ready and the
	// gateway's bundles: a SyncService whose capabilities exclude every
	// source of a tenant runs no worker for it.
	t.Run("no worker for sources the capabilities exclude", func(t *testing.T) {
		only := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "netbox-only", Namespace: acmeNS}, Spec: v1alpha1.SyncServiceSpec{Capabilities: []string{"netbox"}}}
		mustCreate(t, only)
		src := faker("faker-excluded", acmeNS, v1alpha1.SyncServiceReference{Name: only.Name})
		mustCreate(t, src)
		sourceReady(t, src, metav1.ConditionFalse, v1alpha1.ReasonSyncServiceNotAllowed)
		waitFor(t, "netbox-only reconciled with its source", readyIs(only, func() []metav1.Condition { return only.Status.Conditions },
			func() int64 { return only.Generation }, metav1.ConditionTrue, v1alpha1.ReasonReconciled))
		time.Sleep(2 * time.Second) // the source's event reaches the SyncService's queue too
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(only), only); err != nil {
			t.Fatal(err)
		}
		if ready := meta.FindStatusCondition(only.Status.Conditions, v1alpha1.ConditionReady); !strings.HasPrefix(ready.Message, "0 worker(s)") {
			t.Fatalf("Ready message %q, want no workers", ready.Message)
		}
		name := workload.Name("sync", only.Name, "hooli")
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: acmeNS, Name: name}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Fatalf("a worker runs for a source its SyncService may not serve: %v", err)
		}
		if err := env.Client.Patch(ctx, only, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"capabilities":["netbox","faker"]}}`))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "worker once faker is a capability", getObj(env.Client, &appsv1.Deployment{}, acmeNS, name))
		sourceReady(t, src, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	})

	t.Run("heartbeats drive the phase", func(t *testing.T) {
		edge := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge-hb", Namespace: acmeNS}, Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem}}
		mustCreate(t, edge)
		for _, tc := range []struct {
			age  time.Duration
			want v1alpha1.Phase
		}{{0, v1alpha1.PhaseOnline}, {3 * time.Minute, v1alpha1.PhaseOffline}, {10 * time.Second, v1alpha1.PhaseOnline},
			// Offline last: no re-check stays scheduled to write during later tests' quiet windows.
			{3 * time.Minute, v1alpha1.PhaseOffline}} {
			heartbeat(t, edge, time.Now().Add(-tc.age))
			waitFor(t, fmt.Sprintf("phase %s after a heartbeat %s ago", tc.want, tc.age), func() error {
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(edge), edge); err != nil {
					return err
				}
				avail := meta.FindStatusCondition(edge.Status.Conditions, v1alpha1.ConditionAvailable)
				if edge.Status.Phase != tc.want || avail == nil || (avail.Status == metav1.ConditionTrue) != (tc.want == v1alpha1.PhaseOnline) {
					return fmt.Errorf("phase %q available %v", edge.Status.Phase, avail)
				}
				return nil
			})
		}
	})
}

// heartbeat writes lastHeartbeatAt as the gateway does, under its own field owner.
func heartbeat(t *testing.T, ss *v1alpha1.SyncService, at time.Time) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
		"lastHeartbeatAt": at.UTC().Format(time.RFC3339), "version": "test",
	}}}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("SyncService")
	u.SetName(ss.Name)
	u.SetNamespace(ss.Namespace)
	if err := env.Client.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("sync-operator-gateway"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

func volumeSecret(pod corev1.PodSpec, name string) string {
	for _, v := range pod.Volumes {
		if v.Name == name && v.Secret != nil {
			return v.Secret.SecretName
		}
	}
	return ""
}

func TestOnPremOnboardingBundle(t *testing.T) {
	ctx := context.Background()
	startManager(t, ssOpts)
	mustCreate(t, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}})
	ns := tenantNamespace(t, "acme")
	edge := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "edge-1", Namespace: ns},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "hq"}}
	mustCreate(t, edge)
	sec := &corev1.Secret{}
	waitFor(t, "onboarding Secret", getObj(env.Client, sec, ns, "edge-1-onboarding"))
	certs, err := ca.ParseCertificatesPEM(sec.Data[corev1.TLSCertKey])
	if err != nil {
		t.Fatal(err)
	}
	if got := certs[0].Subject.CommonName; got != "edge-1.hq.acme.serviceradar" {
		t.Fatalf("edge CN %q", got)
	}
	if len(certs) < 2 || certs[1].Subject.CommonName != "tenant-acme.ca.serviceradar" {
		t.Fatalf("edge certificate is not issued by acme's tenant CA: %v", certs)
	}
	caCerts, err := ca.ParseCertificatesPEM(sec.Data["ca.crt"])
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(caCerts[0])
	inter.AddCert(certs[1])
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("edge certificate does not chain to the bundled CA: %v", err)
	}
	var boot bootstrap.Config
	if err := json.Unmarshal(sec.Data["config.json"], &boot); err != nil {
		t.Fatal(err)
	}
	if boot.GatewayAddress != edgeGatewayAddress || boot.ComponentID != "edge-1" || boot.Partition != "hq" ||
		boot.Identity.ServerName != "sync.platform.example" || boot.Identity.CertFile == "" {
		t.Fatalf("onboarding config %+v", boot)
	}
	renewAt, err := time.Parse(time.RFC3339, sec.Annotations[workload.RenewAtAnnotation])
	if err != nil || !renewAt.Equal(ca.RenewAt(certs[0]).Truncate(time.Second)) {
		t.Fatalf("renew-at %q, want two thirds of the lifetime (%s)", sec.Annotations[workload.RenewAtAnnotation], ca.RenewAt(certs[0]))
	}
	waitFor(t, "status.onboardingSecretName", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(edge), edge); err != nil {
			return err
		}
		if edge.Status.OnboardingSecretName != "edge-1-onboarding" {
			return fmt.Errorf("onboardingSecretName %q", edge.Status.OnboardingSecretName)
		}
		return nil
	})

	// leaf returns the bundle's current certificate, or an error while it is missing.
	leaf := func() (*x509.Certificate, error) {
		cur := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(sec), cur); err != nil {
			return nil, err
		}
		c, err := ca.ParseCertificatesPEM(cur.Data[corev1.TLSCertKey])
		if err != nil {
			return nil, err
		}
		return c[0], nil
	}
	// reissued waits until the bundle holds a certificate other than old.
	reissued := func(t *testing.T, what string, old *x509.Certificate) *x509.Certificate {
		t.Helper()
		var got *x509.Certificate
		waitFor(t, what, func() error {
			c, err := leaf()
			if err != nil {
				return err
			}
			if c.SerialNumber.Cmp(old.SerialNumber) == 0 {
				return errors.New("same certificate")
			}
			got = c
			return nil
		})
		return got
	}

	// edgeStatus waits until the SyncService reports the certificates the
	// gateway accepts (newest first) and the identity's start.
	edgeStatus := func(t *testing.T, what string, since *x509.Certificate, certs ...*x509.Certificate) {
		t.Helper()
		waitFor(t, what, func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(edge), edge); err != nil {
				return err
			}
			var got, want []string
			for _, c := range edge.Status.EdgeCertificates {
				got = append(got, c.Serial+" "+c.NotAfter.UTC().Format(time.RFC3339))
			}
			for _, c := range certs {
				want = append(want, c.SerialNumber.Text(16)+" "+c.NotAfter.UTC().Format(time.RFC3339))
			}
			s := edge.Status.EdgeIdentitySince
			if !slices.Equal(got, want) || s == nil || !s.Time.Equal(since.NotBefore) {
				return fmt.Errorf("edgeCertificates %v since %v, want %v since %s", got, s, want, since.NotBefore)
			}
			return nil
		})
	}
	first, err := leaf()
	if err != nil {
		t.Fatal(err)
	}
	edgeStatus(t, "the first certificate reported", first, first)

	var fresh *x509.Certificate
	t.Run("a deleted bundle is issued again", func(t *testing.T) {
		old, err := leaf()
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Delete(ctx, sec); err != nil {
			t.Fatal(err)
		}
		fresh = reissued(t, "new onboarding Secret", old)
		// A fresh identity: only the new certificate, and none from before it.
		edgeStatus(t, "only the new certificate reported", fresh, fresh)
	})
	t.Run("a bundle past two thirds of its life is issued again", func(t *testing.T) {
		old, err := leaf()
		if err != nil {
			t.Fatal(err)
		}
		later := ssOpts
		skew := time.Until(ca.RenewAt(old)) + time.Minute
		later.Now = func() time.Time { return time.Now().Add(skew) }
		m := startManager(t, later)
		defer m.stop()
		renewed := reissued(t, "renewed onboarding Secret", old)
		if !renewed.NotAfter.After(old.NotAfter) {
			t.Fatalf("renewed certificate expires %s, not after the old %s", renewed.NotAfter, old.NotAfter)
		}
		// The edge may still run the old one: both are accepted.
		edgeStatus(t, "the renewed and the old certificate reported", fresh, renewed, old)
	})

}

// spireCRD is the ClusterSPIFFEID CRD of the SPIRE controller manager,
// reduced to the fields this project renders, with upstream's schema (see
// the file for its sources): objects the manager renders must pass it.
var spireCRD = filepath.Join(test.RepoRoot(), "test", "helmtest", "testdata", "spire.spiffe.io_clusterspiffeids.yaml")

// installSPIRECRD installs spireCRD and waits until ClusterSPIFFEIDs are served.
func installSPIRECRD(t *testing.T, e *kubetest.Env) {
	t.Helper()
	if _, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{Paths: []string{spireCRD}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing the ClusterSPIFFEID CRD: %v", err)
	}
	waitFor(t, "ClusterSPIFFEID served", func() error {
		return e.Client.List(context.Background(), &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEIDList"}})
	})
}

func TestSPIREIdentityWithClusterSPIFFEID(t *testing.T) {
	ctx := context.Background()
	// A control plane of its own: installing the SPIRE CRD changes how every SyncService behaves.
	e, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	cfg, err := setupRBAC(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	installSPIRECRD(t, e)
	// A gateway that trusts SPIRE, and a SPIRE controller manager that acts
	// on classless objects.
	opts := ssOpts
	opts.GatewayTrust, opts.SPIREClassName = controllers.GatewayTrustSPIRE, ""
	startManagerOn(t, e, cfg, opts)
	if err := e.Client.Create(ctx, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}); err != nil {
		t.Fatal(err)
	}
	ns, err := e.TenantNamespace(ctx, "acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	// A worker as an older manager left it, under the naming of that manager
	// ("sync-<name>-<tenant>", component id "<name>-<tenant>"): a Deployment
	// with the API server's default RollingUpdate strategy and its
	// ClusterSPIFFEID. The manager renders the worker under today's names
	// and identity, and removes the old objects by their labels.
	labels := map[string]string{"app.kubernetes.io/name": "sync-worker", "app.kubernetes.io/managed-by": "sync-operator",
		workload.SyncServiceLabel: "cluster", workload.WorkerTenantLabel: "acme"}
	old := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "sync-cluster-acme", Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "old"}}}}}}
	if err := e.Client.Create(ctx, old, client.FieldOwner(controllers.FieldOwner)); err != nil {
		t.Fatal(err)
	}
	oldID := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"spiffeIDTemplate": "spiffe://serviceradar.local/sync/acme/default/cluster-acme"}}}
	oldID.SetAPIVersion("spire.spiffe.io/v1alpha1")
	oldID.SetKind("ClusterSPIFFEID")
	oldID.SetName(ns + "-sync-cluster-acme")
	oldID.SetLabels(map[string]string{workload.SyncServiceLabel: "cluster", workload.SyncServiceNamespaceLabel: ns, workload.WorkerTenantLabel: "acme"})
	if err := e.Client.Create(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "cluster", Namespace: ns}}
	if err := e.Client.Create(ctx, ss); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Create(ctx, faker("lab", ns, v1alpha1.SyncServiceReference{Name: "cluster"})); err != nil {
		t.Fatal(err)
	}
	objName := workload.Name("sync", "cluster", "acme")
	name := workload.Name(ns, objName)
	id := &unstructured.Unstructured{}
	id.SetAPIVersion("spire.spiffe.io/v1alpha1")
	id.SetKind("ClusterSPIFFEID")
	waitFor(t, "ClusterSPIFFEID "+name, getObj(e.Client, id, "", name))
	tmpl, _, _ := unstructured.NestedString(id.Object, "spec", "spiffeIDTemplate")
	if want := "spiffe://serviceradar.local/sync/acme/default/" + v1alpha1.ComponentID(ss, "acme"); tmpl != want || strings.HasSuffix(tmpl, "/cluster-acme") {
		t.Fatalf("spiffeIDTemplate %q, want %q", tmpl, want)
	}
	if class, found, _ := unstructured.NestedFieldNoCopy(id.Object, "spec", "className"); found {
		t.Fatalf("spec.className %v with an empty class name, want the field left out", class)
	}
	dep := &appsv1.Deployment{}
	waitFor(t, "Deployment rendered by the manager", func() error {
		if err := e.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: objName}, dep); err != nil {
			return err
		}
		if dep.Annotations[workload.HashAnnotation] == "" {
			return errors.New("not applied by the manager yet")
		}
		return nil
	})
	if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || dep.Spec.Strategy.RollingUpdate != nil {
		t.Fatalf("strategy %+v, want Recreate without rollingUpdate", dep.Spec.Strategy)
	}
	for _, o := range []client.Object{&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sync-cluster-acme"}}, oldID} {
		waitFor(t, fmt.Sprintf("the older manager's %T %s removed", o, o.GetName()), func() error {
			if err := e.Client.Get(ctx, client.ObjectKeyFromObject(o), o); apierrors.IsNotFound(err) {
				return nil
			}
			return errors.New("still there")
		})
	}
	var csi bool
	for _, v := range dep.Spec.Template.Spec.Volumes {
		csi = csi || (v.CSI != nil && v.CSI.Driver == "csi.spiffe.io")
	}
	if !csi {
		t.Fatal("worker pod does not mount the SPIFFE CSI driver")
	}
	if err := e.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: workload.Name("sync", "cluster", "acme", "svid")}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("an operator-issued SVID exists in SPIRE mode: %v", err)
	}

	if err := e.Client.Delete(ctx, ss); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ClusterSPIFFEID removed with its SyncService", func() error {
		if err := e.Client.Get(ctx, types.NamespacedName{Name: name}, id); apierrors.IsNotFound(err) {
			return nil
		}
		return errors.New("still there")
	})
}
