// Package v1alpha1 holds the API of the sync operator: Tenant, SyncService and
// IntegrationSource in the group integrations.serviceradar.io.
//
// +kubebuilder:object:generate=true
// +groupName=integrations.serviceradar.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "integrations.serviceradar.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Tenant{}, &TenantList{},
		&SyncService{}, &SyncServiceList{},
		&IntegrationSource{}, &IntegrationSourceList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
