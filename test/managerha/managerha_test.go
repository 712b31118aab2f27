// Package managerha_test runs two replicas of the manager binary on one API
// server, each with exactly the RBAC the manager ships with
// (config/rbac/role.yaml, which the chart renders), and leader election as
// the chart configures it (manager.replicas 2): one replica leads and
// reconciles, the other stands by and reconciles nothing; when the leader
// is stopped (SIGTERM, as in a node drain or a rolling update), the other
// takes over without waiting for the lease to expire, and a Tenant created
// after the handover gets its ID and CA while no existing ID changes.
package managerha_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/gatewayproc"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

// managerBinary is the manager built for this test process.
var managerBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "manager-ha-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if managerBinary, err = test.BuildBinary(dir, "./cmd/manager"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const (
	namespace = "serviceradar-system"
	// leaseName is the manager's Lease (cmd/manager).
	leaseName = "sync-operator.integrations.serviceradar.io"
	// leaseDuration is far longer than the test waits for a handover: a
	// replica that took over only once the leader's lease expired would
	// fail it. The leader releases its lease when it stops.
	leaseDuration = 5 * time.Minute
	handover      = time.Minute
)

// replica is one manager process.
type replica struct {
	cmd     *exec.Cmd
	metrics string
	logs    *syncBuffer
	once    sync.Once
	code    int
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p) //nolint:wrapcheck // bytes.Buffer does not fail
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs a replica as the manager's ServiceAccount.
func start(t *testing.T, kubeconfig string) *replica {
	t.Helper()
	metrics, err := gatewayproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{metrics: metrics, logs: &syncBuffer{}}
	r.cmd = exec.Command(managerBinary, "--namespace="+namespace, "--leader-elect=true",
		"--leader-elect-lease-duration="+leaseDuration.String(), "--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=500ms",
		"--metrics-bind-address="+metrics, "--health-probe-bind-address=0", "--disable-platform-sync")
	r.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("replica with metrics on %s logged:\n%s", r.metrics, r.logs.String())
		}
	})
	return r
}

// stop sends SIGTERM and waits for the replica to exit.
func (r *replica) stop() int {
	r.once.Do(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		_ = r.cmd.Wait()
		r.code = r.cmd.ProcessState.ExitCode()
	})
	return r.code
}

// scrape reads the replica's metrics: samples by their name with labels
// as exposed, nil while the endpoint does not answer.
func (r *replica) scrape() map[string]float64 {
	res, err := http.Get("http://" + r.metrics + "/metrics") //nolint:noctx // a local test endpoint
	if err != nil {
		return nil
	}
	defer func() { _ = res.Body.Close() }()
	body, _ := io.ReadAll(res.Body)
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// leads reports whether the replica holds the lease, by its own account.
func (r *replica) leads() bool {
	return r.scrape()[`leader_election_master_status{name="`+leaseName+`"}`] == 1
}

// reconciles is how many reconciles the replica's controllers ran.
func (r *replica) reconciles() float64 {
	var n float64
	for k, v := range r.scrape() {
		if strings.HasPrefix(k, "controller_runtime_reconcile_total{") {
			n += v
		}
	}
	return n
}

func TestOneManagerReplicaLeadsAndAnotherTakesOver(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	user, err := env.UserWithRoles(ctx, "system:serviceaccount:"+namespace+":sync-operator-manager", "config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "manager.kubeconfig")
	if err := os.WriteFile(kubeconfig, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	lease := func() coordinationv1.LeaseSpec {
		l := &coordinationv1.Lease{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: leaseName}, l); err != nil {
			return coordinationv1.LeaseSpec{}
		}
		return l.Spec
	}
	holder := func() string {
		if h := lease().HolderIdentity; h != nil {
			return *h
		}
		return ""
	}
	// tenant waits for a Tenant's ID and CA, after creating it unless the
	// manager's platform bootstrap does.
	tenant := func(t *testing.T, slug string, create bool) v1alpha1.TenantStatus {
		t.Helper()
		tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}}
		if create {
			if err := env.Client.Create(ctx, tn); err != nil {
				t.Fatal(err)
			}
		}
		test.Eventually(t, "tenant "+slug+"'s ID and CA", handover, func() bool {
			err := env.Client.Get(ctx, client.ObjectKeyFromObject(tn), tn)
			return err == nil && tn.Status.TenantID != "" && tn.Status.CAFingerprint != ""
		})
		return tn.Status
	}
	idOf := func(t *testing.T, slug string) string {
		t.Helper()
		tn := &v1alpha1.Tenant{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: slug}, tn); err != nil {
			t.Fatal(err)
		}
		return tn.Status.TenantID
	}

	a := start(t, kubeconfig)
	test.Eventually(t, "the first replica to lead", handover, a.leads)
	first := holder()
	b := start(t, kubeconfig)
	test.Eventually(t, "the second replica to serve its metrics", handover, func() bool { return b.scrape() != nil })

	platform := tenant(t, "platform", false) // the leader's bootstrap creates it
	acme := tenant(t, "acme", true)
	t.Run("one replica leads and reconciles, the other stands by", func(t *testing.T) {
		if a.reconciles() == 0 {
			t.Error("the leader ran no reconcile")
		}
		if b.leads() || b.reconciles() != 0 {
			t.Errorf("the standby leads (%v) or reconciled (%v times)", b.leads(), b.reconciles())
		}
		if h := holder(); h == "" || h != first {
			t.Errorf("lease holder %q, want the first replica's %q", h, first)
		}
	})

	t.Run("the leader stops, the standby takes over before the lease expires", func(t *testing.T) {
		if code := a.stop(); code != 0 {
			t.Fatalf("the leader exited with %d on SIGTERM, want 0", code)
		}
		test.Eventually(t, "the standby to lead", handover, b.leads)
		if h := holder(); h == "" || h == first {
			t.Fatalf("lease holder %q after the handover, was %q", h, first)
		}
		globex := tenant(t, "globex", true)
		platformID, err := uuid.Parse(platform.TenantID)
		if err != nil {
			t.Fatal(err)
		}
		if want := uuid.NewSHA1(platformID, []byte("globex")).String(); globex.TenantID != want {
			t.Errorf("globex's ID %s after the handover, want %s (of the same platform ID)", globex.TenantID, want)
		}
		if got := idOf(t, "platform"); got != platform.TenantID {
			t.Errorf("the platform ID changed with the handover: %s, was %s", got, platform.TenantID)
		}
		if got := idOf(t, "acme"); got != acme.TenantID {
			t.Errorf("acme's ID changed with the handover: %s, was %s", got, acme.TenantID)
		}
		if b.reconciles() == 0 {
			t.Error("the new leader ran no reconcile")
		}
	})

	// Everything leader election does (the Lease, and the Event that
	// records each new leader) is within the manager's RBAC.
	for name, r := range map[string]*replica{"first": a, "second": b} {
		if logs := r.logs.String(); strings.Contains(logs, "forbidden") {
			t.Errorf("the %s replica was refused a request:\n%s", name, logs)
		}
	}
}
