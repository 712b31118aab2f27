package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/workload"
)

// TestGatewayTrustRefusesMixedIdentities runs one SaaS SyncService under
// managers configured like the chart renders them, on a control plane of its
// own (the SPIRE CRD is installed part-way, which changes every
// SyncService): workers only ever get SVIDs of the kind the gateway trusts
// (--gateway-trust), and a mixed configuration is refused with a Ready
// condition that names both settings, its workers removed.
func TestGatewayTrustRefusesMixedIdentities(t *testing.T) {
	ctx := context.Background()
	e, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	cfg, err := setupRBAC(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Create(ctx, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "umbrella"}, Spec: v1alpha1.TenantSpec{Slug: "umbrella"}}); err != nil {
		t.Fatal(err)
	}
	ns, err := e.TenantNamespace(ctx, "umbrella", "umbrella")
	if err != nil {
		t.Fatal(err)
	}
	ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Name: "cluster", Namespace: ns}}
	if err := e.Client.Create(ctx, ss); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Create(ctx, faker("lab", ns, v1alpha1.SyncServiceReference{Name: "cluster"})); err != nil {
		t.Fatal(err)
	}
	objName := workload.Name("sync", "cluster", "umbrella")
	idName := workload.Name(ns, objName)
	svidName := workload.Name("sync", "cluster", "umbrella", "svid")

	opts := func(trust controllers.GatewayTrust, class string) controllers.Options {
		o := ssOpts
		o.PlatformSync = false
		o.GatewayTrust, o.SPIREClassName = trust, class
		return o
	}
	ready := func(t *testing.T, status metav1.ConditionStatus, reason string, inMessage ...string) {
		t.Helper()
		waitFor(t, fmt.Sprintf("Ready %s %s", status, reason), func() error {
			got := &v1alpha1.SyncService{}
			if err := e.Client.Get(ctx, client.ObjectKeyFromObject(ss), got); err != nil {
				return err
			}
			c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
			if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != got.Generation {
				return fmt.Errorf("Ready %+v", c)
			}
			for _, m := range inMessage {
				if !strings.Contains(c.Message, m) {
					return fmt.Errorf("Ready message %q does not name %q", c.Message, m)
				}
			}
			return nil
		})
	}
	clusterSPIFFEID := func() *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("spire.spiffe.io/v1alpha1")
		u.SetKind("ClusterSPIFFEID")
		u.SetName(idName)
		return u
	}
	gone := func(t *testing.T, what string, obj client.Object) {
		t.Helper()
		waitFor(t, what+" removed", func() error {
			if err := e.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				return nil
			} else if err != nil {
				return err
			}
			return errors.New("still there")
		})
	}
	noWorker := func(t *testing.T) {
		t.Helper()
		gone(t, "worker Deployment", &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: objName}})
		gone(t, "worker ConfigMap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: objName}})
		gone(t, "operator-issued SVID", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svidName}})
		gone(t, "ClusterSPIFFEID", clusterSPIFFEID())
	}
	setProvider := func(t *testing.T, p v1alpha1.IdentityProvider) {
		t.Helper()
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(ss), ss); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(ss.DeepCopy())
		ss.Spec.Identity.Provider = p
		if err := e.Client.Patch(ctx, ss, patch); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("SPIRE gateway without the ClusterSPIFFEID CRD", func(t *testing.T) {
		m := startManagerOn(t, e, cfg, opts(controllers.GatewayTrustSPIRE, controllers.DefaultSPIREClassName))
		defer m.stop()
		ready(t, metav1.ConditionFalse, v1alpha1.ReasonSPIRECRDMissing, "ClusterSPIFFEID CRD", "--gateway-trust=spire", "spire.enabled=true")
		noWorker(t)
	})

	installSPIRECRD(t, e)

	t.Run("SPIRE gateway, SPIRE workers of the configured class", func(t *testing.T) {
		m := startManagerOn(t, e, cfg, opts(controllers.GatewayTrustSPIRE, "spire-server-spire"))
		defer m.stop()
		ready(t, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
		id := clusterSPIFFEID()
		waitFor(t, "ClusterSPIFFEID "+idName, getObj(e.Client, id, "", idName))
		if class, _, _ := unstructured.NestedString(id.Object, "spec", "className"); class != "spire-server-spire" {
			t.Errorf("spec.className %q, want the manager's class spire-server-spire", class)
		}
		waitFor(t, "worker Deployment", getObj(e.Client, &appsv1.Deployment{}, ns, objName))
		if err := e.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: svidName}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Errorf("an operator-issued SVID exists for a SPIRE worker: %v", err)
		}
	})

	t.Run("operator-root gateway refuses SPIRE workers and removes them", func(t *testing.T) {
		m := startManagerOn(t, e, cfg, opts(controllers.GatewayTrustOperator, controllers.DefaultSPIREClassName))
		defer m.stop()
		ready(t, metav1.ConditionFalse, v1alpha1.ReasonGatewayTrustMismatch,
			`spec.identity.provider "spire"`, "--gateway-trust=operator", "spire.enabled=false")
		noWorker(t)
	})

	t.Run("SPIRE gateway refuses operator-issued SVIDs", func(t *testing.T) {
		setProvider(t, v1alpha1.IdentityProviderCertificate)
		m := startManagerOn(t, e, cfg, opts(controllers.GatewayTrustSPIRE, controllers.DefaultSPIREClassName))
		defer m.stop()
		ready(t, metav1.ConditionFalse, v1alpha1.ReasonGatewayTrustMismatch,
			`spec.identity.provider "certificate"`, "--gateway-trust=spire", "spire.enabled=true")
		noWorker(t)
	})

	t.Run("operator-root gateway, operator-issued SVIDs", func(t *testing.T) {
		m := startManagerOn(t, e, cfg, opts(controllers.GatewayTrustOperator, controllers.DefaultSPIREClassName))
		defer m.stop()
		ready(t, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
		waitFor(t, "worker Deployment", getObj(e.Client, &appsv1.Deployment{}, ns, objName))
		waitFor(t, "operator-issued SVID", getObj(e.Client, &corev1.Secret{}, ns, svidName))
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(clusterSPIFFEID()), clusterSPIFFEID()); !apierrors.IsNotFound(err) {
			t.Errorf("a ClusterSPIFFEID exists for a worker with an operator-issued SVID: %v", err)
		}
	})
}
