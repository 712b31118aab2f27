package catalog

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/serviceradar/sync-operator/platform"
)

// secretWatch keeps one referenced Secret current in memory: a list and
// watch of that Secret alone (field selector metadata.name=<name>, as the
// kubelet watches the Secrets of its pods). The API server authorizes such
// a request by the Secret's name, so the gateway needs no access beyond the
// Roles the manager grants it per namespace (get, list and watch restricted
// by resourceNames to the Secrets that sources reference): no other Secret,
// and none of the CA keys, can be read with its credentials.
//
// A watch that is refused (the Secret is not granted, or not yet) answers as
// if the Secret were missing, and keeps retrying with the informer's
// backoff: when the grant comes, the Secret arrives as a change.
type secretWatch struct {
	key    types.NamespacedName
	store  cache.Store
	synced cache.DoneChecker
	stop   context.CancelFunc
	// settled is closed once the first list succeeded or failed: reads wait
	// for it, and no longer.
	settled    chan struct{}
	settleOnce sync.Once

	mu sync.Mutex
	// err is the last failed list or watch; nil after a successful list.
	err error
	// served says that a read was answered: from then on, changes matter.
	served bool
}

// startSecretWatch starts watching one Secret until ctx ends or stop is
// called; changed is called (from the watch's goroutine) after every change
// of the Secret that a read may already have seen.
func startSecretWatch(ctx context.Context, secrets corev1client.SecretsGetter, key types.NamespacedName, changed func()) *secretWatch {
	w := &secretWatch{key: key, settled: make(chan struct{})}
	selector := fields.OneTermEqualSelector("metadata.name", key.Name).String()
	client := secrets.Secrets(key.Namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			list, err := client.List(ctx, opts)
			w.result(err)
			return list, err //nolint:wrapcheck // the informer logs and retries it
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			wi, err := client.Watch(ctx, opts)
			if err != nil {
				w.result(err)
			}
			return wi, err //nolint:wrapcheck // the informer logs and retries it
		},
	}
	notify := func() {
		w.mu.Lock()
		served := w.served
		w.mu.Unlock()
		if served {
			changed()
		}
	}
	store, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Secret{},
		Transform:     slimSecret,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { notify() },
			UpdateFunc: func(old, obj any) { notify() },
			DeleteFunc: func(any) { notify() },
		},
	})
	w.store, w.synced = store, ctrl.HasSyncedChecker()
	ctx, w.stop = context.WithCancel(ctx)
	go ctrl.RunWithContext(ctx)
	go func() {
		select {
		case <-w.synced.Done():
			w.result(nil)
		case <-ctx.Done():
		}
	}()
	return w
}

// result records the outcome of a list or watch; the first one settles the watch.
func (w *secretWatch) result(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	w.settleOnce.Do(func() { close(w.settled) })
}

// get returns the Secret, or nil when it does not exist or the gateway may
// not read it. It waits for the watch's first answer, within ctx. The Secret
// is shared and must not be modified.
func (w *secretWatch) get(ctx context.Context) (*corev1.Secret, error) {
	select {
	case <-w.settled:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for Secret %s: %w", w.key, ctx.Err())
	}
	w.mu.Lock()
	// Marked before the store is read: a change stored after this read is
	// then sure to be notified.
	w.served = true
	err := w.err
	w.mu.Unlock()
	select {
	case <-w.synced.Done():
	default:
		switch {
		case apierrors.IsForbidden(err), apierrors.IsNotFound(err):
			// Not granted (the manager refuses operator Secrets, and grants
			// new references a moment after they appear): left out until it is.
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("reading Secret %s: %w", w.key, err)
		}
	}
	obj, ok, err := w.store.GetByKey(w.key.String())
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s from its watch: %w", w.key, err)
	}
	if !ok {
		return nil, nil
	}
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return nil, fmt.Errorf("watch of Secret %s holds a %T", w.key, obj)
	}
	return sec, nil
}

// slimSecret keeps of a watched Secret what bundles need: its name,
// namespace, uid, resource version, type and data. Annotations and managed
// fields go (kubectl apply keeps a copy of the whole Secret in an annotation).
// The data of a Secret the operator manages (a CA, an identity) goes too: the
// manager never grants one, but a watch opened before a name became the
// operator's may still deliver it.
func slimSecret(in any) (any, error) {
	s, ok := in.(*corev1.Secret)
	if !ok {
		return in, nil
	}
	data := s.Data
	if s.Labels[platform.ManagedByLabel] == platform.ManagedBy {
		data = nil
	}
	return &corev1.Secret{
		TypeMeta: s.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, UID: s.UID,
			ResourceVersion: s.ResourceVersion},
		Type: s.Type, Data: data,
	}, nil
}
