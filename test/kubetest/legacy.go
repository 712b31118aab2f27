package kubetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// tenantCRD is the name of the Tenant CustomResourceDefinition.
const tenantCRD = "tenants.integrations.serviceradar.io"

// CreateLegacyTenant creates tn as a Tenant stored before the slug limit
// (v1alpha1.MaxSlugLength): it relaxes the served schema of spec.slug (no
// maxLength), creates tn, and puts the schema back, waiting until the API
// server refuses such a slug again. The stored Tenant then keeps its slug,
// as one kept across an upgrade does.
func (e *Env) CreateLegacyTenant(ctx context.Context, tn *v1alpha1.Tenant) error {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := e.Client.Get(ctx, client.ObjectKey{Name: tenantCRD}, crd); err != nil {
		return fmt.Errorf("reading the Tenant CRD: %w", err)
	}
	original := crd.DeepCopy()
	for i := range crd.Spec.Versions {
		slug := crd.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"].Properties["slug"]
		slug.MaxLength = nil
		crd.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"].Properties["slug"] = slug
	}
	if err := e.Client.Update(ctx, crd); err != nil {
		return fmt.Errorf("relaxing the Tenant CRD: %w", err)
	}
	created := retry(ctx, func() error {
		if err := e.Client.Create(ctx, tn.DeepCopy()); err != nil {
			return fmt.Errorf("creating tenant %s: %w", tn.Name, err)
		}
		return nil
	})
	if created == nil {
		created = e.Client.Get(ctx, client.ObjectKeyFromObject(tn), tn)
	}
	restored := retry(ctx, func() error {
		now := &apiextensionsv1.CustomResourceDefinition{}
		if err := e.Client.Get(ctx, client.ObjectKey{Name: tenantCRD}, now); err != nil {
			return fmt.Errorf("reading the Tenant CRD: %w", err)
		}
		now.Spec.Versions = original.Spec.Versions
		if err := e.Client.Update(ctx, now); err != nil {
			return fmt.Errorf("updating the Tenant CRD: %w", err)
		}
		return nil
	})
	if restored == nil {
		// Served again only once a long slug is refused.
		probe := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"},
			Spec: v1alpha1.TenantSpec{Slug: strings.Repeat("p", v1alpha1.MaxSlugLength+1)}}
		restored = retry(ctx, func() error {
			if err := e.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll); err == nil {
				return errors.New("a long slug is still accepted")
			}
			return nil
		})
	}
	if created != nil {
		return errors.Join(created, restored)
	}
	if restored != nil {
		return fmt.Errorf("restoring the Tenant CRD: %w", restored)
	}
	return nil
}

// retry calls f every 100 ms until it succeeds, for at most 30 s.
func retry(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
