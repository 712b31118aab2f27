package controllers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

const (
	operatorNS  = "serviceradar-system"
	managerUser = "system:serviceaccount:serviceradar-system:sync-operator"
	eventually  = 30 * time.Second
)

var (
	env *kubetest.Env
	// managerConfig authenticates as managerUser, bound only to config/rbac.
	managerConfig *rest.Config
)

func TestMain(m *testing.M) {
	// Manager logs are noise in a passing run; SYNC_TEST_LOG=1 shows them.
	logs := io.Discard
	if os.Getenv("SYNC_TEST_LOG") != "" {
		logs = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs)))
	var err error
	env, err = kubetest.Start()
	if err == nil {
		managerConfig, err = setupRBAC(context.Background(), env)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if env != nil {
			_ = env.Stop()
		}
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// setupRBAC installs the generated roles of config/rbac, binds them to the
// manager's user and creates the operator namespace, so tests run the manager
// with exactly the permissions it ships with.
func setupRBAC(ctx context.Context, e *kubetest.Env) (*rest.Config, error) {
	c := e.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		return nil, err
	}
	user, err := e.UserWithRoles(ctx, managerUser, "config/rbac/role.yaml")
	if err != nil {
		return nil, err
	}
	return user.Config(), nil
}

// writeCounter counts the manager's write requests to the API server.
type writeCounter struct {
	mu     sync.Mutex
	writes []string
	rt     http.RoundTripper
}

func (w *writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.mu.Lock()
		w.writes = append(w.writes, req.Method+" "+req.URL.Path)
		w.mu.Unlock()
	}
	return w.rt.RoundTrip(req)
}

func (w *writeCounter) reset() {
	w.mu.Lock()
	w.writes = nil
	w.mu.Unlock()
}

func (w *writeCounter) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

// manager is a running manager with its write counter.
type manager struct {
	writes *writeCounter
	stop   func()
}

// startManager runs the manager as it ships (its own RBAC, no leader election
// so the lease renewals do not count as writes) until the test ends or stop.
func startManager(t *testing.T, opts controllers.Options) *manager {
	t.Helper()
	return startManagerOn(t, env, managerConfig, opts)
}

func startManagerOn(t *testing.T, e *kubetest.Env, base *rest.Config, opts controllers.Options) *manager {
	t.Helper()
	counter := &writeCounter{}
	cfg := rest.CopyConfig(base)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.rt = rt; return counter }
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 e.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             ctrlConfig(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.Setup(ctx, mgr, opts); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	m := &manager{writes: counter, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	}}
	t.Cleanup(m.stop)
	return m
}

// waitFor polls until check returns nil or the deadline passes.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(eventually)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}

// readyIs checks an object's Ready condition against status and reason.
func readyIs(obj client.Object, conds func() []metav1.Condition, gen func() int64, status metav1.ConditionStatus, reason string) func() error {
	return func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c := meta.FindStatusCondition(conds(), v1alpha1.ConditionReady)
		if c == nil {
			return fmt.Errorf("no Ready condition yet")
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != gen() {
			return fmt.Errorf("Ready=%s reason %s gen %d (%s), want %s %s gen %d", c.Status, c.Reason, c.ObservedGeneration, c.Message, status, reason, gen())
		}
		return nil
	}
}

func mustCreate(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func tenantNamespace(t *testing.T, slug string) string {
	t.Helper()
	ns, err := env.TenantNamespace(context.Background(), strings.ReplaceAll(slug, ".", "-"), slug)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// ctrlConfig lets each test start a new manager with the same controller names.
func ctrlConfig() ctrlconfig.Controller {
	skip := true
	return ctrlconfig.Controller{SkipNameValidation: &skip}
}
