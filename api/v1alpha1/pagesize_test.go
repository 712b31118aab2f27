package v1alpha1_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/wire/pagesize"
)

// pageSizeSchema is spec.pageSize and spec.type of the installed
// IntegrationSource CRD.
func pageSizeSchema(t *testing.T) (pageSize, typ apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: "integrationsources." + v1alpha1.GroupVersion.Group}, crd); err != nil {
		t.Fatal(err)
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	return spec.Properties["pageSize"], spec.Properties["type"]
}

// TestPageSizeTableCoversTheCRD checks that wire/pagesize has limits for
// exactly the integration types the CRD accepts, that the CRD's own bounds
// are the table's (no default: an unset page size is the type's default),
// and that the field's documentation names each type's default and maximum.
func TestPageSizeTableCoversTheCRD(t *testing.T) {
	pageSize, typ := pageSizeSchema(t)
	var enum []string
	for _, v := range typ.Enum {
		s, err := strconv.Unquote(string(v.Raw))
		if err != nil {
			t.Fatalf("spec.type enum value %s: %v", v.Raw, err)
		}
		enum = append(enum, s)
	}
	slices.Sort(enum)
	if !slices.Equal(enum, pagesize.Types()) {
		t.Errorf("spec.type accepts %v, wire/pagesize has limits for %v", enum, pagesize.Types())
	}
	if pageSize.Default != nil {
		t.Errorf("spec.pageSize defaults to %s in the CRD; the default is per type (wire/pagesize)", pageSize.Default.Raw)
	}
	if pageSize.Minimum == nil || *pageSize.Minimum != pagesize.Min {
		t.Errorf("spec.pageSize minimum %v, want %d", pageSize.Minimum, pagesize.Min)
	}
	if pageSize.Maximum == nil || *pageSize.Maximum != float64(pagesize.Largest()) {
		t.Errorf("spec.pageSize maximum %v, want the table's largest %d", pageSize.Maximum, pagesize.Largest())
	}
	for _, it := range pagesize.Types() {
		l := pagesize.MustFor(it)
		for _, want := range []string{it, strconv.Itoa(int(l.Default)), strconv.Itoa(int(l.Max))} {
			if !regexp.MustCompile(`\b` + want + `\b`).MatchString(pageSize.Description) {
				t.Errorf("spec.pageSize's description does not mention %q (type %s: default %d, max %d):\n%s",
					want, it, l.Default, l.Max, pageSize.Description)
			}
		}
	}
}

// TestPageSizeLimitsPerType checks, against the API server, that each
// integration type's page size is refused above the type's maximum of
// wire/pagesize and accepted at it, and that a source without one is stored
// without one and pages by the type's default.
func TestPageSizeLimitsPerType(t *testing.T) {
	ns := tenantNamespace(t, "acme")
	valid := map[string]string{
		pagesize.Armis:  validArmis,
		pagesize.NetBox: strings.Replace(validArmis, "type: armis", "type: netbox", 1),
		pagesize.Faker:  validFaker,
	}
	ctx := context.Background()
	for _, it := range pagesize.Types() {
		l := pagesize.MustFor(it)
		tmpl, ok := valid[it]
		if !ok {
			t.Fatalf("no valid %s source to test with", it)
		}
		t.Run(it+" above the maximum", func(t *testing.T) {
			obj := build(t, set(tmpl, fmt.Sprintf("spec: {pageSize: %d}", l.Max+1)), ns)
			err := env.Client.Create(ctx, obj)
			if err == nil || !apierrors.IsInvalid(err) {
				t.Fatalf("page size %d for %s: want an Invalid error, got %v", l.Max+1, it, err)
			}
			if !strings.Contains(err.Error(), "spec.pageSize") {
				t.Fatalf("the error does not name spec.pageSize: %v", err)
			}
		})
		t.Run(it+" at the maximum", func(t *testing.T) {
			obj := build(t, set(tmpl, fmt.Sprintf("spec: {pageSize: %d}", l.Max)), ns)
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatalf("page size %d for %s was refused: %v", l.Max, it, err)
			}
		})
		t.Run(it+" unset", func(t *testing.T) {
			obj := build(t, tmpl, ns)
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
			src := &v1alpha1.IntegrationSource{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), src); err != nil {
				t.Fatal(err)
			}
			if src.Spec.PageSize != 0 {
				t.Errorf("stored spec.pageSize %d, want it unset", src.Spec.PageSize)
			}
			if got := src.Spec.EffectivePageSize(); got != l.Default {
				t.Errorf("EffectivePageSize() = %d, want the %s default %d", got, it, l.Default)
			}
		})
	}
}
