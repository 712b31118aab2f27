// Command bench-operator measures the manager at scale on a real API server
// (`make bench-operator`): it creates TENANTS tenants, each with a namespace,
// SOURCES IntegrationSources and their Secrets, all served by the platform
// SyncService, starts the manager, and prints how long until every Tenant and
// IntegrationSource is Ready, how many writes the manager makes during a
// steady period, and the peak resident memory of this process (the manager
// runs in it; the API server and etcd are separate processes). It ends with
// one line: RESULT converge_s=<n> steady_writes=<n> rss_mib=<n>.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

const operatorNS = "serviceradar-system"

func main() {
	tenants := flag.Int("tenants", 500, "number of tenants")
	sources := flag.Int("sources", 4, "IntegrationSources per tenant")
	steady := flag.Duration("steady", 2*time.Minute, "how long to count writes once converged")
	qps := flag.Float64("qps", controllers.DefaultKubeAPIQPS, "the manager's client rate limit (the manager's --kube-api-qps default)")
	burst := flag.Int("burst", controllers.DefaultKubeAPIBurst, "the manager's client burst (the manager's --kube-api-burst default)")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	if err := run(*tenants, *sources, *steady, float32(*qps), *burst); err != nil {
		fmt.Fprintln(os.Stderr, "bench-operator:", err)
		os.Exit(1)
	}
}

// writeCounter counts the manager's writes, in all and by verb and
// resource (the path's resource and subresource; namespaces and names left
// out).
type writeCounter struct {
	n  atomic.Int64
	rt http.RoundTripper

	mu     sync.Mutex
	byKind map[string]int
}

func (w *writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.n.Add(1)
		w.mu.Lock()
		if w.byKind == nil {
			w.byKind = map[string]int{}
		}
		w.byKind[req.Method+" "+resourceOf(req.URL.Path)]++
		w.mu.Unlock()
	}
	return w.rt.RoundTrip(req) //nolint:wrapcheck // a transport passes errors through
}

// resourceOf is the resource (and subresource) a request path names:
// /apis/<group>/<version>/namespaces/<ns>/<resource>/<name>/<sub> reads
// "<resource>/<sub>".
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3:
		parts = parts[3:]
	}
	if len(parts) > 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return "?"
	case 1, 2:
		return parts[0]
	}
	return parts[0] + "/" + parts[2]
}

// breakdown lists the writes by verb and resource, most first.
func (w *writeCounter) breakdown() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.byKind))
	for k := range w.byKind {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return w.byKind[keys[i]] > w.byKind[keys[j]] || w.byKind[keys[i]] == w.byKind[keys[j]] && keys[i] < keys[j]
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %6d %s\n", w.byKind[k], k)
	}
	return b.String()
}

// parallel runs fn for 0..n-1 on a few workers and returns the first error.
func parallel(n int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var first atomic.Value
	next := atomic.Int64{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

func run(nTenants, nSources int, steady time.Duration, qps float32, burst int) error {
	ctx := context.Background()
	env, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		return fmt.Errorf("creating operator namespace: %w", err)
	}
	types := []v1alpha1.IntegrationType{v1alpha1.IntegrationArmis, v1alpha1.IntegrationNetBox, v1alpha1.IntegrationFaker, v1alpha1.IntegrationArmis}
	begin := time.Now()
	err = parallel(nTenants, func(i int) error {
		slug := fmt.Sprintf("tenant-%04d", i)
		objs := []client.Object{
			&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: slug, Labels: map[string]string{v1alpha1.TenantLabel: slug}}},
		}
		for j := range nSources {
			typ := types[j%len(types)]
			src := &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("src-%d", j), Namespace: slug},
				Spec: v1alpha1.IntegrationSourceSpec{Type: typ, SyncServiceRef: v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}}}
			if key, ok := v1alpha1.CredentialKey(typ); ok {
				secret := fmt.Sprintf("creds-%d", j)
				objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: slug}, Data: map[string][]byte{key: []byte("bench-credential")}})
				src.Spec.Endpoint = "https://" + string(typ) + ".example"
				src.Spec.CredentialsSecretRef = &v1alpha1.SecretReference{Name: secret}
				if typ == v1alpha1.IntegrationArmis {
					src.Spec.Queries = []v1alpha1.Query{{Label: "all", Query: "in:devices"}}
				}
			}
			objs = append(objs, src)
		}
		for _, o := range objs {
			if err := c.Create(ctx, o); err != nil {
				return fmt.Errorf("creating %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("created %d tenants, %d sources and their Secrets in %s\n", nTenants, nTenants*nSources, time.Since(begin).Round(time.Millisecond))

	counter := &writeCounter{}
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = qps, burst
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.rt = rt; return counter }
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := controllers.Setup(mctx, mgr, controllers.Options{Namespace: operatorNS, PlatformSlug: "platform", PlatformSync: true,
		GatewayAddress: "sync-gateway.serviceradar-system.svc:50052"}); err != nil {
		return err
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- mgr.Start(mctx) }()

	converged := false
	for deadline := start.Add(15 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		notReady, err := countNotReady(ctx, c)
		if err != nil {
			return err
		}
		fmt.Printf("  %5.1fs: %d objects not Ready yet, %d manager writes\n", time.Since(start).Seconds(), notReady, counter.n.Load())
		if notReady == 0 {
			converged = true
			break
		}
	}
	convergeS := time.Since(start).Seconds()
	if !converged {
		return fmt.Errorf("not converged after %.0fs", convergeS)
	}
	time.Sleep(5 * time.Second) // let the last watch events of the convergence arrive
	before := counter.n.Load()
	fmt.Printf("converged in %.1fs with %d writes (%.2f per Tenant and IntegrationSource); by verb and resource:\n%s",
		convergeS, before, float64(before)/float64(nTenants*(1+nSources)), counter.breakdown())
	fmt.Printf("counting writes for %s of steady state\n", steady)
	time.Sleep(steady)
	steadyWrites := counter.n.Load() - before
	stop()
	if err := <-done; err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	rss, err := peakRSSMiB()
	if err != nil {
		return err
	}
	fmt.Printf("RESULT converge_s=%.1f steady_writes=%d rss_mib=%d\n", convergeS, steadyWrites, rss)
	return nil
}

func countNotReady(ctx context.Context, c client.Client) (int, error) {
	n := 0
	var ts v1alpha1.TenantList
	if err := c.List(ctx, &ts); err != nil {
		return 0, fmt.Errorf("listing tenants: %w", err)
	}
	for _, t := range ts.Items {
		if !meta.IsStatusConditionTrue(t.Status.Conditions, v1alpha1.ConditionReady) {
			n++
		}
	}
	var srcs v1alpha1.IntegrationSourceList
	if err := c.List(ctx, &srcs); err != nil {
		return 0, fmt.Errorf("listing sources: %w", err)
	}
	for _, s := range srcs.Items {
		if !meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ConditionReady) {
			n++
		}
	}
	return n, nil
}

// peakRSSMiB reads this process's peak resident set (VmHWM).
func peakRSSMiB() (int, error) {
	runtime.GC()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/self/status: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			var kb int
			_, _ = fmt.Sscanf(f[1], "%d", &kb)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}
