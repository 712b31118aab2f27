package workqueue_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"k8s.io/client-go/util/workqueue"

	gqueue "github.com/serviceradar/sync-operator/gateway/workqueue"
)

// TestRunWorkersWorksKeysAtOnceButNeverOneKeyTwice: with four workers, four
// keys are reconciled at the same time (each waits until all four have
// started), a key added again while it is being reconciled waits for that
// reconcile to end, and a failed key is retried.
func TestRunWorkersWorksKeysAtOnceButNeverOneKeyTwice(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, 10*time.Millisecond))
	var mu sync.Mutex
	started := map[string]int{}
	running := map[string]bool{}
	together := make(chan struct{})
	var once sync.Once
	done := make(chan struct{})
	calls := 0
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		gqueue.RunWorkers(ctx, q, testr.New(t), "test work", 4, func(_ context.Context, key string) (time.Duration, error) {
			mu.Lock()
			if running[key] {
				t.Errorf("key %s reconciled twice at once", key)
			}
			running[key] = true
			started[key]++
			calls++
			n, first := len(started), started[key] == 1
			if n == 4 {
				once.Do(func() { close(together) })
			}
			if key == "a" && started[key] == 1 {
				q.Add("a") // added again while it runs
			}
			mu.Unlock()
			if first {
				select {
				case <-together:
				case <-time.After(time.Minute):
					t.Errorf("key %s: the four keys were never reconciled at once", key)
				}
			}
			mu.Lock()
			running[key] = false
			all := started["a"] >= 2 && started["b"] >= 2
			mu.Unlock()
			if key == "b" && started["b"] == 1 {
				return 0, errors.New("failing once")
			}
			if all {
				select {
				case <-done:
				default:
					close(done)
				}
			}
			return 0, nil
		})
	}()
	for _, k := range []string{"a", "b", "c", "d"} {
		q.Add(k)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("a was not reconciled again, or b not retried")
	}
	cancel()
	<-ran
}
