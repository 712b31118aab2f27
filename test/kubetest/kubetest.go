// Package kubetest starts a real kube-apiserver and etcd (built from Go
// modules by hack/envtest-assets.sh) with the project's CRDs installed, for
// tests that need the Kubernetes API.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/test"
)

// Asset environment variables that point at the binaries, as envtest reads them.
const (
	EnvAPIServer = "TEST_ASSET_KUBE_APISERVER"
	EnvEtcd      = "TEST_ASSET_ETCD"
	EnvKubectl   = "TEST_ASSET_KUBECTL"
)

// Env is a running API server with the project's CRDs installed.
type Env struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Client is a controller-runtime client using Scheme.
	Client client.Client
	// Scheme knows the built-in kinds, CRDs and the project's API.
	Scheme *runtime.Scheme
	// CRDs are the CustomResourceDefinitions that were installed.
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// StartupTime is how long the control plane took to start and install the CRDs.
	StartupTime time.Duration

	env   *envtest.Environment
	admin *envtest.AuthenticatedUser
}

// NewScheme returns a scheme with the built-in kinds, CRDs and the project's API.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("building scheme: %w", err)
		}
	}
	return s, nil
}

// ensureAssets makes sure the binaries exist and the asset variables point at
// them, building them with hack/envtest-assets.sh when the variables are unset.
func ensureAssets() error {
	if os.Getenv(EnvAPIServer) != "" && os.Getenv(EnvEtcd) != "" {
		for _, v := range []string{EnvAPIServer, EnvEtcd} {
			if _, err := os.Stat(os.Getenv(v)); err != nil {
				return fmt.Errorf("%s=%s: %w (run `make envtest-assets`)", v, os.Getenv(v), err)
			}
		}
		return nil
	}
	script := filepath.Join(test.RepoRoot(), "hack", "envtest-assets.sh")
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("building test binaries with %s: %w", script, err)
	}
	dir := strings.TrimSpace(string(out))
	for v, name := range map[string]string{EnvAPIServer: "kube-apiserver", EnvEtcd: "etcd", EnvKubectl: "kubectl"} {
		if err := os.Setenv(v, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("setting %s: %w", v, err)
		}
	}
	return nil
}

// Start starts etcd and kube-apiserver, installs the CRDs of config/crd/bases
// and waits until they are served.
func Start() (*Env, error) {
	if err := ensureAssets(); err != nil {
		return nil, err
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		Scheme:                   scheme,
		CRDDirectoryPaths:        []string{filepath.Join(test.RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	begin := time.Now()
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest control plane: %w", err)
	}
	e := &Env{Config: cfg, Scheme: scheme, CRDs: env.CRDs, env: env, StartupTime: time.Since(begin)}
	if e.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, errors.Join(fmt.Errorf("creating client: %w", err), env.Stop())
	}
	if e.admin, err = e.AddUser(envtest.User{Name: "kubetest-admin", Groups: []string{"system:masters"}}); err != nil {
		return nil, errors.Join(err, env.Stop())
	}
	return e, nil
}

// Stop stops the API server and etcd and removes their data.
func (e *Env) Stop() error {
	if err := e.env.Stop(); err != nil {
		return fmt.Errorf("stopping envtest control plane: %w", err)
	}
	return nil
}

// Kubectl runs the kubectl binary against the API server and returns its
// standard output; the error carries standard error.
func (e *Env) Kubectl(args ...string) (string, error) {
	kubectl, err := e.admin.Kubectl()
	if err != nil {
		return "", fmt.Errorf("configuring kubectl: %w", err)
	}
	stdout, stderr, err := kubectl.Run(args...)
	if err != nil {
		msg, _ := io.ReadAll(stderr)
		return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	out, err := io.ReadAll(stdout)
	if err != nil {
		return "", fmt.Errorf("reading kubectl output: %w", err)
	}
	return string(out), nil
}

// TenantNamespace creates a namespace labeled as belonging to the tenant with
// the given slug and returns its name.
func (e *Env) TenantNamespace(ctx context.Context, prefix, slug string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: prefix + "-",
		Labels:       map[string]string{v1alpha1.TenantLabel: slug},
	}}
	if err := e.Client.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("creating namespace for tenant %q: %w", slug, err)
	}
	return ns.Name, nil
}

// AddUser provisions a user (with its groups) on the API server and returns
// its credentials, from which a kubeconfig can be rendered.
func (e *Env) AddUser(u envtest.User) (*envtest.AuthenticatedUser, error) {
	au, err := e.env.AddUser(u, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", u.Name, err)
	}
	return au, nil
}

// OnboardTenant creates a Tenant with its tenant id in status (as the
// manager would set it: a UUID derived from the slug) and a namespace
// labelled for it, for tests and benchmarks that run without the manager.
func (e *Env) OnboardTenant(ctx context.Context, slug string, platform bool) (namespace, tenantID string, err error) {
	tn := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug, Platform: platform}}
	if err := e.Client.Create(ctx, tn); err != nil {
		return "", "", fmt.Errorf("creating tenant %s: %w", slug, err)
	}
	tn.Status.TenantID = uuid.NewSHA1(uuid.NameSpaceOID, []byte(slug)).String()
	if err := e.Client.Status().Update(ctx, tn); err != nil {
		return "", "", fmt.Errorf("setting the tenant id of %s: %w", slug, err)
	}
	ns, err := e.TenantNamespace(ctx, slug, slug)
	if err != nil {
		return "", "", err
	}
	return ns, tn.Status.TenantID, nil
}
