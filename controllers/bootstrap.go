package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/platform"
)

// PlatformSyncName is the name of the platform SyncService created at bootstrap.
const PlatformSyncName = "platform-sync"

// Bootstrap makes the platform exist: its persisted UUID and root CA, the
// operator namespace labeled for the platform tenant, the platform Tenant and
// (unless disabled) the platform SyncService. It runs once on the leader and
// only creates what is missing, so users' later edits are kept and a restart
// writes nothing.
type Bootstrap struct {
	Client       client.Client
	Reader       client.Reader
	Store        *platform.Store
	PlatformSlug string
	// PlatformSync creates the platform SyncService when true.
	PlatformSync bool
	Log          logr.Logger
}

// NeedLeaderElection makes Bootstrap run on the leader only.
func (b *Bootstrap) NeedLeaderElection() bool { return true }

// Start runs the bootstrap, retrying with backoff until it succeeds or ctx ends.
func (b *Bootstrap) Start(ctx context.Context) error {
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 8, Cap: 30 * time.Second}
	for {
		err := b.Run(ctx)
		if err == nil {
			b.Log.Info("platform bootstrap complete", "namespace", b.Store.Namespace, "platformSlug", b.PlatformSlug)
			return nil
		}
		b.Log.Error(err, "platform bootstrap failed; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff.Step()):
		}
	}
}

// Run performs one bootstrap pass.
func (b *Bootstrap) Run(ctx context.Context) error {
	if _, err := b.Store.PlatformTenantID(ctx); err != nil {
		return err
	}
	if _, err := b.Store.RootCA(ctx); err != nil {
		return err
	}
	ns := &corev1.Namespace{}
	if err := b.Reader.Get(ctx, client.ObjectKey{Name: b.Store.Namespace}, ns); err != nil {
		return fmt.Errorf("reading operator namespace %q: %w", b.Store.Namespace, err)
	}
	if ns.Labels[v1alpha1.TenantLabel] != b.PlatformSlug {
		apply := applycorev1.Namespace(b.Store.Namespace).WithLabels(map[string]string{v1alpha1.TenantLabel: b.PlatformSlug})
		if err := b.Client.Apply(ctx, apply, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("labeling operator namespace %q for the platform tenant: %w", b.Store.Namespace, err)
		}
	}
	tenant := &v1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: b.PlatformSlug, Labels: map[string]string{platform.ManagedByLabel: platform.ManagedBy}},
		Spec:       v1alpha1.TenantSpec{Slug: b.PlatformSlug, Platform: true, DisplayName: "Platform"},
	}
	if err := b.createIfMissing(ctx, tenant); err != nil {
		return err
	}
	if !b.PlatformSync {
		return nil
	}
	ss := &v1alpha1.SyncService{
		ObjectMeta: metav1.ObjectMeta{Name: PlatformSyncName, Namespace: b.Store.Namespace, Labels: map[string]string{platform.ManagedByLabel: platform.ManagedBy}},
		Spec:       v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeSaaS, Platform: true},
	}
	return b.createIfMissing(ctx, ss)
}

func (b *Bootstrap) createIfMissing(ctx context.Context, obj client.Object) error {
	existing := obj.DeepCopyObject().(client.Object)
	err := b.Reader.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	if err := b.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}
