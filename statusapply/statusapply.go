// Package statusapply writes the status of this project's objects by
// server-side apply of typed objects, as cert-manager's ApplyStatus does:
// only the status of the given object is sent, to the status subresource,
// under one field manager. Each writer (the manager, and each of the
// gateway's writers) thereby owns exactly the status fields it sets, and a
// field it leaves unset (at its zero value, which the JSON encoding leaves
// out) is no longer its own: the API server removes it unless another
// writer owns it. A writer never sends, and so never removes, fields of
// another.
package statusapply

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// Option changes what Apply sends.
type Option func(*options)

type options struct {
	zero []string
}

// WithZero sends the named top-level status fields (JSON names) also at
// their zero value, which the JSON encoding of an omitempty field leaves
// out: the writer keeps owning them and records the zero (0 devices, no
// error), as kubectl's columns show it. Only string, integer and bool
// fields can be named.
func WithZero(fields ...string) Option {
	return func(o *options) { o.zero = append(o.zero, fields...) }
}

// Apply server-side applies obj's status (and nothing else of it) under
// the field manager owner, forcing ownership of the fields it sets. obj is
// a typed object of a kind with a status subresource: its name and
// namespace name the object (its uid, when set, is sent too), and its
// resourceVersion, when set, is a precondition (the write is refused with
// a Conflict when the live object is newer). Build it afresh with only what the writer owns, never
// from a live object whose status holds other writers' fields.
func Apply(ctx context.Context, c client.Client, owner string, obj client.Object, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	gvk, err := apiutil.GVKForObject(obj, c.Scheme())
	if err != nil {
		return fmt.Errorf("applying the status of %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	status, err := statusOf(obj, o.zero)
	if err != nil {
		return fmt.Errorf("applying the status of %s %s: %w", gvk.Kind, client.ObjectKeyFromObject(obj), err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	u.SetGroupVersionKind(gvk)
	u.SetName(obj.GetName())
	u.SetNamespace(obj.GetNamespace())
	u.SetUID(obj.GetUID())
	u.SetResourceVersion(obj.GetResourceVersion())
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(owner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying the status of %s %s: %w", gvk.Kind, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// statusOf is obj's status as server-side apply takes it, with the zero
// fields added.
func statusOf(obj client.Object, zero []string) (map[string]any, error) {
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	status, _ := raw["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
	}
	if len(zero) == 0 {
		return status, nil
	}
	v := reflect.ValueOf(obj)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	st := v.FieldByName("Status")
	if st.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%T has no Status struct", obj)
	}
	for _, name := range zero {
		if _, ok := status[name]; ok {
			continue
		}
		f, ok := fieldByJSONName(st, name)
		if !ok {
			return nil, fmt.Errorf("%T has no status field %q", obj, name)
		}
		switch f.Kind() {
		case reflect.String:
			status[name] = ""
		case reflect.Bool:
			status[name] = false
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			status[name] = int64(0)
		default:
			return nil, fmt.Errorf("status field %q of %T is a %s, not a string, integer or bool", name, obj, f.Kind())
		}
	}
	return status, nil
}

// fieldByJSONName finds the field of struct v that JSON names name.
func fieldByJSONName(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
