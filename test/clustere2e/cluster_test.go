package clustere2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/test/kubetest"
	"github.com/serviceradar/sync-operator/test/netboxemu"
	"github.com/serviceradar/sync-operator/workload"
)

const (
	operatorNS  = "serviceradar-system"
	release     = "sync-operator"
	tenantSlug  = "acme"
	tenantNS    = "acme"
	managerName = "sync-operator-manager"
	gatewayName = "sync-gateway"

	fakerDevices      = 20000
	fakerDevicesAfter = 50000
	armisDevices      = 4000
	netboxDevices     = 1500 // and the emulator's virtual machines
)

// restricted labels a namespace so the API server enforces the restricted
// Pod Security Standard on every pod created in it.
var restricted = map[string]string{
	"pod-security.kubernetes.io/enforce": "restricted",
	"pod-security.kubernetes.io/warn":    "restricted",
}

// settings are what hack/cluster/e2e.sh tells the test about the cluster.
type settings struct {
	kubeconfig string
	helm       string
	imageRepo  string
	imageTag   string
	nodeIP     string // the node's address, reachable from pods: PostgreSQL and the emulators listen on it
	podCIDR    string
	gatewayIP  string // the fixed cluster IP of the gateway Service (there is no cluster DNS)

	// previousChart and previousImage (repo:tag) are the previous release
	// (hack/cluster/previous.sh), installed first and upgraded from; empty
	// when this clone lacks it, and then the current release is installed.
	previousChart, previousImage string
}

func loadSettings(t *testing.T) settings {
	if os.Getenv("SYNC_CLUSTER_E2E") != "1" {
		t.Skip("the cluster test runs inside the node's namespace: make cluster-e2e (as root)")
	}
	s := settings{
		kubeconfig: os.Getenv("KUBECONFIG"), helm: os.Getenv("SYNC_CLUSTER_HELM"),
		nodeIP: os.Getenv("SYNC_CLUSTER_NODE_IP"), podCIDR: os.Getenv("SYNC_CLUSTER_POD_CIDR"),
		gatewayIP:     os.Getenv("SYNC_CLUSTER_GATEWAY_IP"),
		previousChart: os.Getenv("SYNC_CLUSTER_PREVIOUS_CHART"), previousImage: os.Getenv("SYNC_CLUSTER_PREVIOUS_IMAGE"),
	}
	if (s.previousChart == "") != (s.previousImage == "") || (s.previousImage != "" && !strings.Contains(s.previousImage, ":")) {
		t.Fatalf("SYNC_CLUSTER_PREVIOUS_CHART and SYNC_CLUSTER_PREVIOUS_IMAGE (repo:tag) are set together or not at all")
	}
	image := os.Getenv("SYNC_CLUSTER_IMAGE")
	i := strings.LastIndex(image, ":")
	if i < 0 || s.kubeconfig == "" || s.helm == "" || s.nodeIP == "" || s.podCIDR == "" || s.gatewayIP == "" {
		t.Fatalf("KUBECONFIG, SYNC_CLUSTER_HELM, SYNC_CLUSTER_IMAGE (repo:tag), SYNC_CLUSTER_NODE_IP, SYNC_CLUSTER_POD_CIDR and SYNC_CLUSTER_GATEWAY_IP must be set (hack/cluster/e2e.sh sets them)")
	}
	s.imageRepo, s.imageTag = image[:i], image[i+1:]
	return s
}

// run is the state of one cluster test.
type run struct {
	t      *testing.T
	ctx    context.Context
	s      settings
	c      client.Client
	db     *pgxpool.Pool
	phases []string
	pods   []string
}

// phase runs one step of the test and records how long it took.
func (r *run) phase(name string, f func()) {
	r.t.Helper()
	start := time.Now()
	r.t.Logf("phase %q", name)
	f()
	line := fmt.Sprintf("%-40s %6.1fs", name, time.Since(start).Seconds())
	r.phases = append(r.phases, line)
	r.t.Logf("phase %q done in %.1fs", name, time.Since(start).Seconds())
}

// waitFor polls cond every 250 ms until it reports done, for at most limit;
// on timeout the test fails naming what and the last state cond described.
func (r *run) waitFor(what string, limit time.Duration, cond func() (bool, string)) {
	r.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		done, state := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s did not happen within %s; last seen: %s", what, limit, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// helm runs the project's helm against the cluster.
func (r *run) helm(args ...string) string {
	r.t.Helper()
	cmd := exec.CommandContext(r.ctx, r.s.helm, append(args, "--kubeconfig", r.s.kubeconfig)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	if strings.Contains(errOut.String(), "would violate PodSecurity") {
		r.t.Errorf("helm %s warned about Pod Security:\n%s", args[0], errOut.String())
	}
	return out.String()
}

func (r *run) create(objs ...client.Object) {
	r.t.Helper()
	for _, o := range objs {
		if err := r.c.Create(r.ctx, o); err != nil {
			r.t.Fatalf("creating %T %s/%s: %v", o, o.GetNamespace(), o.GetName(), err)
		}
	}
}

// count counts the tenant's devices matching where.
func (r *run) count(where string, args ...any) int {
	var n int
	q := fmt.Sprintf("SELECT count(*) FROM tenant_%s.ocsf_devices WHERE %s", tenantSlug, where)
	if err := r.db.QueryRow(r.ctx, q, args...).Scan(&n); err != nil {
		return -1
	}
	return n
}

// bySource counts the tenant's devices a source reported.
func (r *run) bySource(source string) int { return r.count("$1 = ANY(discovery_sources)", source) }

// duplicates counts identifiers of a type that name more than one device.
func (r *run) duplicates(identifierType string) int {
	var n int
	q := fmt.Sprintf(`SELECT count(*) FROM (SELECT identifier_value FROM tenant_%s.device_identifiers
WHERE identifier_type = $1 GROUP BY identifier_value HAVING count(*) > 1) d`, tenantSlug)
	if err := r.db.QueryRow(r.ctx, q, identifierType).Scan(&n); err != nil {
		r.t.Fatalf("counting duplicate %s identifiers: %v", identifierType, err)
	}
	return n
}

// deploymentReady reports whether a Deployment rolled out all its replicas
// and they are Ready.
func (r *run) deploymentReady(ns, name string) (bool, string) {
	d := &appsv1.Deployment{}
	if err := r.c.Get(r.ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
		return false, fmt.Sprintf("Deployment %s/%s: %v", ns, name, err)
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	state := fmt.Sprintf("Deployment %s/%s generation %d observed %d replicas %d updated %d ready %d available %d; pods: %s",
		ns, name, d.Generation, st.ObservedGeneration, st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas, r.podStates(ns, d.Spec.Selector.MatchLabels))
	return st.ObservedGeneration == d.Generation && st.UpdatedReplicas == want && st.ReadyReplicas == want &&
		st.AvailableReplicas == want && st.Replicas == want, state
}

// podStates describes the pods matching labels: phase, readiness, waiting reasons.
func (r *run) podStates(ns string, labels map[string]string) string {
	pods := &corev1.PodList{}
	if err := r.c.List(r.ctx, pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		return err.Error()
	}
	var out []string
	for _, p := range pods.Items {
		s := p.Name + " " + string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			switch {
			case cs.State.Waiting != nil:
				s += fmt.Sprintf(" %s waiting %s: %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
			case cs.State.Terminated != nil:
				s += fmt.Sprintf(" %s terminated %s (exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
			default:
				s += fmt.Sprintf(" %s ready=%t restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				s += fmt.Sprintf(" [%s: %s]", c.Type, c.Message)
			}
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

// recordPodStarts notes, for each Ready pod matching labels, how long it took
// from being scheduled to being Ready.
func (r *run) recordPodStarts(what, ns string, labels map[string]string) {
	pods := &corev1.PodList{}
	if err := r.c.List(r.ctx, pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		r.t.Fatalf("listing %s pods: %v", what, err)
	}
	for _, p := range pods.Items {
		var scheduled, ready time.Time
		for _, c := range p.Status.Conditions {
			switch {
			case c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue:
				scheduled = c.LastTransitionTime.Time
			case c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue:
				ready = c.LastTransitionTime.Time
			}
		}
		if scheduled.IsZero() || ready.IsZero() || p.DeletionTimestamp != nil {
			continue
		}
		r.pods = append(r.pods, fmt.Sprintf("%-8s %-50s scheduled -> Ready %3.0fs", what, p.Name, ready.Sub(scheduled).Seconds()))
	}
}

// serve serves an emulator on the node's address, where pods reach it.
func (r *run) serve(h http.Handler) string {
	l, err := net.Listen("tcp", net.JoinHostPort(r.s.nodeIP, "0"))
	if err != nil {
		r.t.Fatalf("listening on the node's address: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	r.t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

// startPostgres starts a PostgreSQL listening on loopback (for the test) and
// on the node's address (for the gateway pods), and returns both DSNs.
func (r *run) startPostgres() (local, forPods string) {
	// Under /tmp itself: postgres.sh hands the folder to the postgres user,
	// who could not enter a test's private TempDir.
	dir, err := os.MkdirTemp("", "sync-cluster-pg.")
	if err != nil {
		r.t.Fatal(err)
	}
	script := filepath.Join(test.RepoRoot(), "hack", "postgres.sh")
	cmd := exec.CommandContext(r.ctx, script, "start", dir)
	cmd.Env = append(os.Environ(), "PG_EXTRA_LISTEN="+r.s.nodeIP, "PG_EXTRA_HBA="+r.s.podCIDR)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("starting PostgreSQL: %v", err)
	}
	r.t.Cleanup(func() { _ = exec.Command(script, "stop", dir).Run() })
	local = strings.TrimSpace(string(out))
	forPods = strings.Replace(local, "@127.0.0.1:", "@"+r.s.nodeIP+":", 1)
	if forPods == local {
		r.t.Fatalf("PostgreSQL DSN %q is not on 127.0.0.1", local)
	}
	return local, forPods
}

func (r *run) source(name string) *v1alpha1.IntegrationSource {
	s := &v1alpha1.IntegrationSource{}
	if err := r.c.Get(r.ctx, client.ObjectKey{Namespace: tenantNS, Name: name}, s); err != nil {
		return &v1alpha1.IntegrationSource{}
	}
	return s
}

// synced reports whether a source's last run succeeded with n devices (any
// number when n < 0; and, when notRun is set, is another run than that one).
func (r *run) synced(name string, n int64, notRun string) func() (bool, string) {
	return func() (bool, string) {
		st := r.source(name).Status
		return st.LastSyncResult == v1alpha1.SyncResultSuccess && (n < 0 || st.DevicesDiscovered == n) && st.DevicesDiscovered > 0 && st.LastRunID != notRun,
			fmt.Sprintf("IntegrationSource %s/%s: result %q devices %d run %q error %q", tenantNS, name,
				st.LastSyncResult, st.DevicesDiscovered, st.LastRunID, st.LastError)
	}
}

func (r *run) syncServiceOnline() (bool, string) {
	ss := &v1alpha1.SyncService{}
	if err := r.c.Get(r.ctx, client.ObjectKey{Namespace: operatorNS, Name: controllers.PlatformSyncName}, ss); err != nil {
		return false, fmt.Sprintf("SyncService %s/%s: %v", operatorNS, controllers.PlatformSyncName, err)
	}
	return ss.Status.Phase == v1alpha1.PhaseOnline, fmt.Sprintf("SyncService %s/%s phase %q conditions %v",
		operatorNS, ss.Name, ss.Status.Phase, ss.Status.Conditions)
}

// TestChartOnARealNode installs the chart from the locally built image into
// the real cluster and checks that it works as users run it: the manager and
// both gateway replicas become Ready; a Tenant with three sources gets a
// worker pod that starts under the restricted Pod Security Standard, reads
// its operator-issued SVID and syncs every source into the tenant's schema;
// deleting the worker pod and a gateway pod in the middle of a run loses and
// doubles nothing; helm upgrade rolls the Deployments and keeps the data;
// helm uninstall keeps the CRDs and the custom resources. The first install
// is of the previous release (when hack/cluster/e2e.sh found it), upgraded
// to this one once its sources have synced: tenant identities, CAs and
// devices survive, every schema is migrated, and the sources keep syncing.
func TestChartOnARealNode(t *testing.T) {
	s := loadSettings(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	scheme, err := kubetest.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, ctx: ctx, s: s, c: c}
	defer func() {
		t.Logf("phases:\n%s", strings.Join(r.phases, "\n"))
		sort.Strings(r.pods)
		t.Logf("pod start times:\n%s", strings.Join(r.pods, "\n"))
	}()
	chart := filepath.Join(test.RepoRoot(), "charts", "sync-operator")
	managerPods := map[string]string{"app.kubernetes.io/name": "sync-operator", "app.kubernetes.io/component": "manager"}
	gatewayPods := map[string]string{"app.kubernetes.io/name": "sync-operator", "app.kubernetes.io/component": "gateway"}
	workerName := workload.Name("sync", controllers.PlatformSyncName, tenantSlug)
	workerPods := map[string]string{workload.SyncServiceLabel: controllers.PlatformSyncName, workload.WorkerTenantLabel: tenantSlug}

	var podDSN string
	r.phase("PostgreSQL in the node's namespace", func() {
		var local string
		local, podDSN = r.startPostgres()
		if r.db, err = pgxpool.New(ctx, local); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.db.Close)
	})

	r.phase("helm install; manager and 2 gateways Ready", func() {
		r.create(
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS, Labels: restricted}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "sync-postgres"}, StringData: map[string]string{"dsn": podDSN}},
		)
		if s.previousChart != "" {
			t.Logf("installing the previous release: %s from %s", s.previousImage, s.previousChart)
			r.helm(r.chartArgs("install", s.previousChart, s.previousImage)...)
		} else {
			t.Logf("NOT testing the upgrade from the previous release: hack/cluster/e2e.sh did not find it")
			r.helm(r.chartArgs("install", chart, s.imageRepo+":"+s.imageTag)...)
		}
		r.waitFor("the manager Deployment Ready", 3*time.Minute, func() (bool, string) { return r.deploymentReady(operatorNS, managerName) })
		r.waitFor("both gateway replicas Ready", 3*time.Minute, func() (bool, string) { return r.deploymentReady(operatorNS, gatewayName) })
		r.recordPodStarts("manager", operatorNS, managerPods)
		r.recordPodStarts("gateway", operatorNS, gatewayPods)
	})

	// Observed now, so that Armis' last-seen times are recent and its devices available.
	armis := armisemu.New(armisemu.Options{Seed: 5, Devices: armisDevices, Epoch: time.Now()})
	netbox := netboxemu.New(netboxemu.Options{Seed: 6, Devices: netboxDevices})
	armisURL, netboxURL := r.serve(armis), r.serve(netbox)
	var netboxReported int
	ref := v1alpha1.SyncServiceReference{Namespace: operatorNS, Name: controllers.PlatformSyncName}
	hour := &metav1.Duration{Duration: time.Hour}
	src := func(name string, spec v1alpha1.IntegrationSourceSpec) *v1alpha1.IntegrationSource {
		spec.SyncServiceRef, spec.PollInterval, spec.DiscoveryInterval = ref, hour, hour
		return &v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: name}, Spec: spec}
	}
	r.phase("tenant, 3 sources: worker pod Ready, first sync", func() {
		nsLabels := map[string]string{v1alpha1.TenantLabel: tenantSlug}
		for k, v := range restricted {
			nsLabels[k] = v
		}
		r.create(
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenantNS, Labels: nsLabels}},
			&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: tenantSlug}, Spec: v1alpha1.TenantSpec{Slug: tenantSlug}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "armis"}, StringData: map[string]string{"secret_key": armisemu.DefaultSecretKey}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "netbox"}, StringData: map[string]string{"api_token": netbox.V1Token()}},
			src("lab", v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationFaker, Faker: &v1alpha1.FakerSpec{Devices: fakerDevices, Seed: 1}}),
			src("armis", v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationArmis, Endpoint: armisURL,
				CredentialsSecretRef: &v1alpha1.SecretReference{Name: "armis"}, Queries: []v1alpha1.Query{{Label: "all", Query: "in:devices"}}, PageSize: 1000}),
			src("netbox", v1alpha1.IntegrationSourceSpec{Type: v1alpha1.IntegrationNetBox, Endpoint: netboxURL,
				CredentialsSecretRef: &v1alpha1.SecretReference{Name: "netbox"}, PageSize: 500}),
		)
		r.waitFor("the acme worker Deployment Ready", 3*time.Minute, func() (bool, string) { return r.deploymentReady(operatorNS, workerName) })
		r.recordPodStarts("worker", operatorNS, workerPods)
		for _, tc := range []struct {
			name string
			n    int64
		}{{"lab", fakerDevices}, {"armis", armisDevices}, {"netbox", -1}} {
			r.waitFor("IntegrationSource "+tenantNS+"/"+tc.name+" synced", 5*time.Minute, r.synced(tc.name, tc.n, ""))
		}
		// NetBox reports its devices and virtual machines but not those it
		// marks decommissioning: what its status says it reported is stored.
		netboxReported = int(r.source("netbox").Status.DevicesDiscovered)
		for _, tc := range []struct {
			source string
			n      int
		}{{"faker", fakerDevices}, {"armis", armisDevices}, {"netbox", netboxReported}} {
			if got := r.bySource(tc.source); got != tc.n {
				t.Errorf("tenant_%s.ocsf_devices holds %d devices from %s, want %d", tenantSlug, got, tc.source, tc.n)
			}
		}
		r.waitFor("SyncService platform-sync Online", 2*time.Minute, r.syncServiceOnline)
		r.checkWorkerPod(workerName, workerPods)
	})

	if s.previousChart != "" {
		r.phase("helm upgrade from the previous release", func() {
			r.upgradeFromPrevious(chart, workerName, managerPods, gatewayPods, workerPods)
		})
	}

	r.phase("worker and gateway pods deleted mid-run", func() {
		before := r.source("lab").Status.LastRunID
		patch := fmt.Sprintf(`{"spec":{"faker":{"devices":%d}}}`, fakerDevicesAfter)
		if err := c.Patch(ctx, r.source("lab"), client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatal(err)
		}
		// Not an upper bound: the run may end between two polls, and
		// everything checked below holds either way.
		r.waitFor("the bigger Faker run under way", 3*time.Minute, func() (bool, string) {
			n := r.bySource("faker")
			return n > fakerDevices, fmt.Sprintf("%d Faker devices", n)
		})
		victims := r.deletePods(operatorNS, workerPods, 0)
		victims = append(victims, r.deletePods(operatorNS, gatewayPods, 1)...)
		midRun := r.source("lab").Status.LastRunID == before
		t.Logf("deleted %v with %d Faker devices stored (run still open: %t)", victims, r.bySource("faker"), midRun)
		r.waitFor("the acme worker Deployment Ready again", 3*time.Minute, func() (bool, string) { return r.deploymentReady(operatorNS, workerName) })
		r.waitFor("both gateway replicas Ready again", 3*time.Minute, func() (bool, string) { return r.deploymentReady(operatorNS, gatewayName) })
		r.waitFor("IntegrationSource acme/lab synced after the deletions", 5*time.Minute, r.synced("lab", fakerDevicesAfter, before))
		if got := r.bySource("faker"); got != fakerDevicesAfter {
			t.Errorf("after the interrupted run tenant_%s holds %d Faker devices, want %d", tenantSlug, got, fakerDevicesAfter)
		}
		if d := r.duplicates("faker_device_id"); d != 0 {
			t.Errorf("%d Faker device ids name several devices after the interrupted run", d)
		}
		for _, tc := range []struct {
			source string
			n      int
		}{{"armis", armisDevices}, {"netbox", netboxReported}} {
			if got := r.bySource(tc.source); got != tc.n {
				t.Errorf("after the interrupted run tenant_%s holds %d devices from %s, want %d", tenantSlug, got, tc.source, tc.n)
			}
		}
		r.recordPodStarts("worker", operatorNS, workerPods)
	})

	r.phase("helm upgrade with a changed value", func() {
		gens := map[string]int64{}
		for _, name := range []string{managerName, gatewayName} {
			d := &appsv1.Deployment{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: name}, d); err != nil {
				t.Fatal(err)
			}
			gens[name] = d.Generation
		}
		devicesBefore := r.count("true")
		r.helm("upgrade", release, chart, "--namespace", operatorNS, "--reuse-values",
			"--set", "manager.podAnnotations.e2e/rollout=upgraded", "--set", "gateway.podAnnotations.e2e/rollout=upgraded")
		for _, name := range []string{managerName, gatewayName} {
			r.waitFor("Deployment "+name+" rolled", 4*time.Minute, func() (bool, string) {
				d := &appsv1.Deployment{}
				if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: name}, d); err != nil {
					return false, err.Error()
				}
				ok, state := r.deploymentReady(operatorNS, name)
				return ok && d.Generation > gens[name] && d.Spec.Template.Annotations["e2e/rollout"] == "upgraded", state
			})
		}
		r.waitFor("the old pods gone", 2*time.Minute, func() (bool, string) {
			pods := &corev1.PodList{}
			if err := c.List(ctx, pods, client.InNamespace(operatorNS), client.MatchingLabels{"app.kubernetes.io/name": "sync-operator"}); err != nil {
				return false, err.Error()
			}
			var old []string
			for _, p := range pods.Items {
				if p.Annotations["e2e/rollout"] != "upgraded" {
					old = append(old, p.Name)
				}
			}
			return len(old) == 0, fmt.Sprintf("pods from before the upgrade: %v", old)
		})
		r.recordPodStarts("manager", operatorNS, managerPods)
		r.recordPodStarts("gateway", operatorNS, gatewayPods)
		if after := r.count("true"); after != devicesBefore {
			t.Errorf("the upgrade changed the device count from %d to %d", devicesBefore, after)
		}
		r.waitFor("SyncService platform-sync Online after the upgrade", 3*time.Minute, r.syncServiceOnline)
		for _, name := range []string{"lab", "armis", "netbox"} {
			if st := r.source(name).Status; st.LastSyncResult != v1alpha1.SyncResultSuccess {
				t.Errorf("after the upgrade IntegrationSource %s/%s reads %q (%s)", tenantNS, name, st.LastSyncResult, st.LastError)
			}
		}
	})

	r.phase("helm uninstall keeps CRDs and CRs", func() {
		r.helm("uninstall", release, "--namespace", operatorNS, "--wait", "--timeout", "3m")
		for _, name := range []string{managerName, gatewayName} {
			if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: name}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
				t.Errorf("Deployment %s/%s after helm uninstall: %v, want it gone", operatorNS, name, err)
			}
		}
		for _, crd := range []string{"tenants", "syncservices", "integrationsources"} {
			name := crd + "." + v1alpha1.GroupVersion.Group
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
				t.Errorf("CustomResourceDefinition %s after helm uninstall: %v", name, err)
			}
		}
		for _, o := range []client.Object{
			&v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: tenantSlug}},
			&v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: controllers.PlatformSyncName}},
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "lab"}},
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "armis"}},
			&v1alpha1.IntegrationSource{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "netbox"}},
		} {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				t.Errorf("%T %s after helm uninstall: %v", o, client.ObjectKeyFromObject(o), err)
			}
		}
	})
}

// chartArgs are the helm arguments of an install or upgrade of chart with
// image (repo:tag): the values this cluster needs, set explicitly rather than
// reused, so that an upgrade gets the new chart's defaults for the rest.
func (r *run) chartArgs(verb, chart, image string) []string {
	i := strings.LastIndex(image, ":")
	return []string{verb, release, chart, "--namespace", operatorNS,
		"--set", "image.repository=" + image[:i], "--set", "image.tag=" + image[i+1:], "--set", "image.pullPolicy=Never",
		"--set", "gateway.service.clusterIP=" + r.s.gatewayIP,
		"--set", "manager.gatewayAddress=" + net.JoinHostPort(r.s.gatewayIP, "50052")}
}

// upgradeFromPrevious upgrades the previous release to this tree's chart and
// image with data in place, and checks that nothing was lost: every pod runs
// the new image, the tenant keeps its ID and CA, the devices of each source
// are all there, the tenant's schema is at the newest migration, and every
// source still reads Synced (the next phase runs a new sync on it).
func (r *run) upgradeFromPrevious(chart, workerName string, managerPods, gatewayPods, workerPods map[string]string) {
	t, c, ctx := r.t, r.c, r.ctx
	image := r.s.imageRepo + ":" + r.s.imageTag
	tenant := &v1alpha1.Tenant{}
	if err := c.Get(ctx, client.ObjectKey{Name: tenantSlug}, tenant); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, src := range []string{"faker", "armis", "netbox"} {
		before[src] = r.bySource(src)
	}
	total := r.count("true")

	r.helm(r.chartArgs("upgrade", chart, image)...)
	for _, name := range []string{managerName, gatewayName, workerName} {
		r.waitFor("Deployment "+name+" on "+image, 4*time.Minute, func() (bool, string) {
			d := &appsv1.Deployment{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: name}, d); err != nil {
				return false, err.Error()
			}
			ok, state := r.deploymentReady(operatorNS, name)
			for _, ctr := range d.Spec.Template.Spec.Containers {
				if ctr.Image != image {
					return false, fmt.Sprintf("container %s runs %s; %s", ctr.Name, ctr.Image, state)
				}
			}
			return ok, state
		})
	}
	r.waitFor("no pod of the previous release left", 2*time.Minute, func() (bool, string) {
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(operatorNS)); err != nil {
			return false, err.Error()
		}
		var old []string
		for _, p := range pods.Items {
			for _, ctr := range p.Spec.Containers {
				if ctr.Image == r.s.previousImage {
					old = append(old, p.Name)
				}
			}
		}
		return len(old) == 0, fmt.Sprintf("pods on %s: %v", r.s.previousImage, old)
	})
	r.recordPodStarts("manager", operatorNS, managerPods)
	r.recordPodStarts("gateway", operatorNS, gatewayPods)
	r.recordPodStarts("worker", operatorNS, workerPods)

	r.waitFor("SyncService platform-sync Online after the upgrade", 3*time.Minute, r.syncServiceOnline)
	after := &v1alpha1.Tenant{}
	if err := c.Get(ctx, client.ObjectKey{Name: tenantSlug}, after); err != nil {
		t.Fatal(err)
	}
	if after.Status.TenantID != tenant.Status.TenantID || after.Status.CAFingerprint != tenant.Status.CAFingerprint {
		t.Errorf("the upgrade changed Tenant %s: ID %s -> %s, CA %s -> %s", tenantSlug,
			tenant.Status.TenantID, after.Status.TenantID, tenant.Status.CAFingerprint, after.Status.CAFingerprint)
	}
	for src, n := range before {
		if got := r.bySource(src); got != n {
			t.Errorf("after the upgrade tenant_%s holds %d devices from %s, want %d", tenantSlug, got, src, n)
		}
	}
	if got := r.count("true"); got != total {
		t.Errorf("the upgrade changed the device count from %d to %d", total, got)
	}
	want := newestMigration(t)
	r.waitFor("tenant_"+tenantSlug+" migrated to version "+strconv.Itoa(want), 2*time.Minute, func() (bool, string) {
		var v int
		if err := r.db.QueryRow(ctx, "SELECT max(version) FROM tenant_"+tenantSlug+".schema_migrations").Scan(&v); err != nil {
			return false, err.Error()
		}
		return v == want, fmt.Sprintf("schema version %d", v)
	})
	for _, name := range []string{"lab", "armis", "netbox"} {
		if st := r.source(name).Status; st.LastSyncResult != v1alpha1.SyncResultSuccess {
			t.Errorf("after the upgrade IntegrationSource %s/%s reads %q (%s)", tenantNS, name, st.LastSyncResult, st.LastError)
		}
	}
}

// newestMigration is the highest version among this tree's migrations
// (gateway/store/migrations/NNNN_*.sql).
func newestMigration(t *testing.T) int {
	files, err := filepath.Glob(filepath.Join(test.RepoRoot(), "gateway", "store", "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	newest := 0
	for _, f := range files {
		num, _, _ := strings.Cut(filepath.Base(f), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("migration %s: %v", f, err)
		}
		newest = max(newest, v)
	}
	return newest
}

// checkWorkerPod checks what the kubelet ran for the worker: the operator's
// SVID Secret mounted, no ServiceAccount token, and the restricted security
// context the namespace enforces.
func (r *run) checkWorkerPod(workerName string, labels map[string]string) {
	pods := &corev1.PodList{}
	if err := r.c.List(r.ctx, pods, client.InNamespace(operatorNS), client.MatchingLabels(labels)); err != nil || len(pods.Items) == 0 {
		r.t.Fatalf("the acme worker pod: %v (%d pods)", err, len(pods.Items))
	}
	p := pods.Items[0]
	svid := workload.Name("sync", controllers.PlatformSyncName, tenantSlug, "svid")
	mounted := false
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == svid {
			mounted = true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == svid {
					mounted = true
				}
				if src.ServiceAccountToken != nil {
					r.t.Errorf("worker pod %s mounts a ServiceAccount token (volume %s)", p.Name, v.Name)
				}
			}
		}
	}
	if !mounted {
		r.t.Errorf("worker pod %s does not mount the SVID Secret %s: volumes %+v", p.Name, svid, p.Spec.Volumes)
	}
	if p.Spec.SecurityContext == nil || p.Spec.SecurityContext.RunAsNonRoot == nil || !*p.Spec.SecurityContext.RunAsNonRoot {
		r.t.Errorf("worker pod %s does not run as non-root", p.Name)
	}
	if p.Spec.ServiceAccountName != workerName {
		r.t.Errorf("worker pod %s runs as ServiceAccount %q, want %q", p.Name, p.Spec.ServiceAccountName, workerName)
	}
}

// deletePods deletes the pods matching labels (at most limit of them when
// limit > 0) and returns their names.
func (r *run) deletePods(ns string, labels map[string]string, limit int) []string {
	pods := &corev1.PodList{}
	if err := r.c.List(r.ctx, pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		r.t.Fatalf("listing pods %v: %v", labels, err)
	}
	var names []string
	for _, p := range pods.Items {
		if limit > 0 && len(names) == limit {
			break
		}
		if err := r.c.Delete(r.ctx, &p); err != nil && !apierrors.IsNotFound(err) {
			r.t.Fatalf("deleting pod %s/%s: %v", ns, p.Name, err)
		}
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		r.t.Fatalf("no pod matches %v in %s", labels, ns)
	}
	return names
}
