package edgemanifest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/test"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

// bundleSecret is the Secret name config/edge/kubernetes.yaml mounts.
const bundleSecret = "sync-edge-bundle"

func edgeFile(name string) string { return filepath.Join(test.RepoRoot(), "config", "edge", name) }

// manifest decodes config/edge/kubernetes.yaml.
func manifest(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	raw, err := os.ReadFile(edgeFile("kubernetes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("config/edge/kubernetes.yaml: %v", err)
		}
		if len(u.Object) != 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

func deployment(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatal("config/edge/kubernetes.yaml has no Deployment")
	return nil
}

// TestEdgeManifestRunsTheBundleWritableUnderRestricted applies the manifest
// to a real API server in a namespace that enforces the restricted Pod
// Security Standard, with the bundle Secret in place: the objects pass
// validation and the Deployment's pod is admitted (a pod without the
// security settings is refused there, so the check has teeth). It checks the
// design the README states: the worker reads config.json from a persistent,
// writable volume (its renewal rewrites tls.key and tls.crt next to it),
// never from the read-only Secret, and gets no API credentials.
func TestEdgeManifestRunsTheBundleWritableUnderRestricted(t *testing.T) {
	objs := manifest(t)
	d := deployment(t, objs)
	spec := d.Spec.Template.Spec

	t.Run("the bundle is writable and persistent", func(t *testing.T) {
		var worker *corev1.Container
		for i := range spec.Containers {
			if spec.Containers[i].Name == "worker" {
				worker = &spec.Containers[i]
			}
		}
		if worker == nil {
			t.Fatal("no container named worker")
		}
		if !slices.Equal(worker.Command, []string{"/worker"}) {
			t.Errorf("worker command %v, want the image's /worker", worker.Command)
		}
		var config string
		for _, a := range worker.Args {
			if v, ok := strings.CutPrefix(a, "--config="); ok {
				config = v
			}
		}
		if config == "" {
			t.Fatalf("worker args %v have no --config=", worker.Args)
		}
		dir := path.Dir(config)
		var vol string
		for _, m := range worker.VolumeMounts {
			if m.MountPath == dir {
				if m.ReadOnly {
					t.Errorf("the bundle directory %s is mounted read-only: renewal cannot write there", dir)
				}
				vol = m.Name
			}
		}
		if vol == "" {
			t.Fatalf("no volume is mounted at %s, the directory of --config", dir)
		}
		for _, v := range spec.Volumes {
			if v.Name == vol && v.PersistentVolumeClaim == nil {
				t.Errorf("volume %s at %s is not a PersistentVolumeClaim: a renewed certificate would not survive a restart", vol, dir)
			}
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Error("the pod mounts a ServiceAccount token; the edge worker needs no API access")
		}
		if len(spec.InitContainers) != 1 {
			t.Fatalf("%d init containers, want the one that seeds the bundle", len(spec.InitContainers))
		}
	})

	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sync-edge-", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// The Secret as `kubectl create secret generic --from-file=<bundle dir>` makes it.
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: bundleSecret, Namespace: ns.Name}, Data: map[string][]byte{
		"config.json": []byte(`{"gateway_address":"sync.example.com:50052"}`), "tls.crt": []byte("-"), "tls.key": []byte("-"), "ca.crt": []byte("-"),
	}}
	if err := env.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}

	t.Run("the API server accepts the manifest", func(t *testing.T) {
		if out, err := env.Kubectl("apply", "--server-side", "--dry-run=server", "-n", ns.Name, "-f", edgeFile("kubernetes.yaml")); err != nil {
			t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
		}
		for _, o := range objs {
			o := o.DeepCopy()
			o.SetNamespace(ns.Name)
			if err := env.Client.Create(ctx, o); err != nil {
				t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	})

	pod := func(spec corev1.PodSpec) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: d.Name + "-", Namespace: ns.Name, Labels: d.Spec.Template.Labels}, Spec: spec}
	}
	t.Run("its pod is admitted under restricted", func(t *testing.T) {
		if err := env.Client.Create(ctx, pod(*spec.DeepCopy()), client.DryRunAll); err != nil {
			t.Fatalf("the Deployment's pod is refused in a restricted namespace: %v", err)
		}
	})
	t.Run("a pod without its security settings is refused there", func(t *testing.T) {
		bare := spec.DeepCopy()
		bare.SecurityContext = nil
		for i := range bare.Containers {
			bare.Containers[i].SecurityContext = nil
		}
		err := env.Client.Create(ctx, pod(*bare), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Fatalf("a pod without security settings: %v, want a PodSecurity refusal", err)
		}
	})
}

// TestEdgeSystemdUnit checks config/edge/sync-worker.service: systemd-analyze
// verify finds nothing to report (with ExecStart pointed at an existing
// executable, as verify requires), the worker's bundle directory is the
// unit's state directory (the one writable path under ProtectSystem=strict),
// and the hardening directives are in place.
func TestEdgeSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile(edgeFile("sync-worker.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	directives := map[string][]string{}
	for line := range strings.Lines(unit) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			directives[k] = append(directives[k], v)
		}
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "", "StateDirectoryMode": "0700",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
	} {
		if got := directives[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	exec0 := strings.Fields(strings.Join(directives["ExecStart"], " "))
	i := slices.Index(exec0, "--config")
	if i < 0 || i+1 >= len(exec0) {
		t.Fatalf("ExecStart %v has no --config", exec0)
	}
	if dir, want := path.Dir(exec0[i+1]), "/var/lib/"+strings.Join(directives["StateDirectory"], ""); dir != want {
		t.Errorf("--config is in %s, not in the state directory %s: renewal could not write there", dir, want)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the directives were checked")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "sync-worker.service")
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(unit, exec0[0], self)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", f).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
