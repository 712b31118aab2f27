package controllers_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
)

// An OnPrem SyncService's bundle carries the address an edge site can dial:
// its own spec.gatewayAddress or the manager's edge default. With neither,
// no bundle is issued and Ready says why; a host that the gateway
// certificate the manager issues does not name is refused (the edge worker
// would refuse the gateway); the default's host is put on that certificate;
// a changed address renders the bundle again.
func TestOnPremEdgeGatewayAddress(t *testing.T) {
	ctx := context.Background()
	mustCreate(t, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "edgy"}, Spec: v1alpha1.TenantSpec{Slug: "edgy"}})
	ns := tenantNamespace(t, "edgy")
	ready := func(ss *v1alpha1.SyncService, status metav1.ConditionStatus, reason string) func() error {
		return readyIs(ss, func() []metav1.Condition { return ss.Status.Conditions }, func() int64 { return ss.Generation }, status, reason)
	}
	noBundle := func(t *testing.T, ss *v1alpha1.SyncService) {
		t.Helper()
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ss.Name + "-onboarding"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s: a bundle was issued without a usable gateway address: %v", ss.Name, err)
		}
	}
	// bundle waits for ss's bundle to carry address, and returns its server name.
	bundle := func(t *testing.T, ss *v1alpha1.SyncService, address string) string {
		t.Helper()
		var boot bootstrap.Config
		waitFor(t, ss.Name+" bundle for "+address, func() error {
			sec := &corev1.Secret{}
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ss.Name + "-onboarding"}, sec); err != nil {
				return err
			}
			if err := json.Unmarshal(sec.Data["config.json"], &boot); err != nil {
				return err
			}
			if boot.GatewayAddress != address {
				return fmt.Errorf("bundle for %s", boot.GatewayAddress)
			}
			return nil
		})
		return boot.Identity.ServerName
	}
	setAddress := func(t *testing.T, ss *v1alpha1.SyncService, address string) {
		t.Helper()
		patch := fmt.Sprintf(`{"spec":{"gatewayAddress":%q}}`, address)
		if err := env.Client.Patch(ctx, ss, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("no edge address anywhere", func(t *testing.T) {
		o := ssOpts
		o.EdgeGatewayAddress = ""
		m := startManager(t, o)
		defer m.stop()
		ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "site-a", Namespace: ns},
			Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "hq"}}
		mustCreate(t, ss)
		waitFor(t, "site-a refused", ready(ss, metav1.ConditionFalse, v1alpha1.ReasonEdgeGatewayAddressUnknown))
		noBundle(t, ss)

		setAddress(t, ss, "edge-gw.edgy.example:8443")
		if name := bundle(t, ss, "edge-gw.edgy.example:8443"); name != "edge-gw.edgy.example" {
			t.Errorf("the bundle's server name is %q, want the host it dials", name)
		}
		waitFor(t, "site-a Ready", ready(ss, metav1.ConditionTrue, v1alpha1.ReasonReconciled))
		setAddress(t, ss, "[2001:db8::7]:443")
		if name := bundle(t, ss, "[2001:db8::7]:443"); name != "2001:db8::7" {
			t.Errorf("the bundle's server name is %q, want the address it dials", name)
		}
	})

	t.Run("the manager issues the gateway certificate", func(t *testing.T) {
		o := ssOpts
		o.GatewayTLSSecret = "sync-gateway-tls-edge"
		o.GatewayDNSNames = []string{"gateway.edgy.example"}
		m := startManager(t, o)
		defer m.stop()
		byDefault := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "site-b", Namespace: ns},
			Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "hq"}}
		own := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "site-c", Namespace: ns},
			Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "hq", GatewayAddress: "login.bank.example:443"}}
		mustCreate(t, byDefault, own)
		waitFor(t, "site-c refused", ready(own, metav1.ConditionFalse, v1alpha1.ReasonEdgeGatewayAddressNotOnCertificate))
		noBundle(t, own)

		gw := &corev1.Secret{}
		waitFor(t, "the gateway certificate", func() error {
			return env.Client.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: o.GatewayTLSSecret}, gw)
		})
		pair, err := tls.X509KeyPair(gw.Data[corev1.TLSCertKey], gw.Data[corev1.TLSPrivateKeyKey])
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		// What the edge worker does: verify the gateway for the bundle's server name.
		verify := func(name string) error {
			_, err := leaf.Verify(x509.VerifyOptions{Roots: rootPool(t, env.Client), DNSName: name})
			return err
		}
		if err := verify(bundle(t, byDefault, edgeGatewayAddress)); err != nil {
			t.Errorf("an edge worker with the default address would refuse the gateway: %v", err)
		}
		setAddress(t, own, "gateway.edgy.example:443")
		if err := verify(bundle(t, own, "gateway.edgy.example:443")); err != nil {
			t.Errorf("an edge worker with its own address would refuse the gateway: %v", err)
		}
		waitFor(t, "site-c Ready", ready(own, metav1.ConditionTrue, v1alpha1.ReasonReconciled))
		if verify("login.bank.example") == nil {
			t.Errorf("the gateway certificate names a host that only a SyncService asked for")
		}
	})
}
