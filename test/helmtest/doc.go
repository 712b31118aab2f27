// Package helmtest tests the Helm chart charts/sync-operator and the kustomize
// build config/default: helm lint, rendering with default and full values,
// the values schema, RBAC equal to the generated config/rbac, an install into
// a real API server (test/kubetest) and kustomize yielding the chart's objects.
// helm is bin/helm, built from the Go module in hack/tools/helm by
// hack/helm-assets.sh; the tests skip when it is missing unless
// SYNC_TEST_REQUIRE_HELM is set.
package helmtest
