package v1alpha1

import "github.com/serviceradar/sync-operator/wire/pagesize"

// EffectivePageSize is the page size a source's worker pages by:
// spec.pageSize, or the type's default from wire/pagesize when it is unset,
// never more than the type's maximum (which the CRD already enforces).
func (s *IntegrationSourceSpec) EffectivePageSize() int32 {
	l, ok := pagesize.For(string(s.Type))
	if !ok {
		return s.PageSize
	}
	return l.Resolve(s.PageSize)
}
