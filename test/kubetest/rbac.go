package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/serviceradar/sync-operator/test"
)

// UserWithRoles installs the roles of a generated RBAC file (a path relative
// to the repository root, such as config/rbac/role.yaml), binds each of them
// to a new user and returns that user's config: tests then run a component
// with exactly the permissions it ships with (Config() for a client,
// KubeConfig() for a process). Namespaced roles need their namespace to exist.
// Called again for the same user and file (a component started again), it
// keeps the roles and bindings it created before.
func (e *Env) UserWithRoles(ctx context.Context, user, file string) (*envtest.AuthenticatedUser, error) {
	data, err := os.ReadFile(filepath.Join(test.RepoRoot(), file))
	if err != nil {
		return nil, fmt.Errorf("reading roles: %w", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", file, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := e.Client.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		binding := &unstructured.Unstructured{Object: map[string]any{
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": u.GetKind(), "name": u.GetName()},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}},
		}}
		binding.SetAPIVersion("rbac.authorization.k8s.io/v1")
		binding.SetKind(u.GetKind() + "Binding")
		binding.SetName(u.GetName())
		binding.SetNamespace(u.GetNamespace())
		if err := e.Client.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("binding %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return e.AddUser(envtest.User{Name: user})
}
