// Package workqueue runs the gateway's small informer-driven controllers
// (tenant schemas, retractions, sync requests): workers draining a
// client-go rate-limited queue until its context ends.
package workqueue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/util/workqueue"
)

// Run takes keys from q one at a time and reconciles them until ctx ends: a
// failed key is retried with the queue's backoff (logged as "<what> will be
// retried"), one whose reconcile asks for a later look is added again after
// that delay, and any other is forgotten.
func Run[K comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[K], log logr.Logger, what string,
	reconcile func(context.Context, K) (time.Duration, error),
) {
	RunWorkers(ctx, q, log, what, 1, reconcile)
}

// RunWorkers is Run with workers goroutines taking keys at once (at least
// one); the queue never hands one key to two of them at the same time. It
// returns when every worker has stopped.
func RunWorkers[K comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[K], log logr.Logger, what string, workers int,
	reconcile func(context.Context, K) (time.Duration, error),
) {
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for work(ctx, q, log, what, reconcile) {
			}
		})
	}
	wg.Wait()
}

// work reconciles one key; it reports false once the queue shut down.
func work[K comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[K], log logr.Logger, what string,
	reconcile func(context.Context, K) (time.Duration, error),
) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	after, err := reconcile(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Info(what+" will be retried", "key", fmt.Sprint(key), "error", err.Error())
		q.AddRateLimited(key)
	case err == nil && after > 0:
		q.Forget(key)
		q.AddAfter(key, after)
	default:
		q.Forget(key)
	}
	return true
}
