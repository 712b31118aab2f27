// Package clustere2e holds the test that runs the project as its users run
// it: the chart installed with helm into the real single-node cluster of
// `make cluster` (kubelet, containerd, kube-proxy), from the image of
// `make image`, with worker pods started by the kubelet under the restricted
// Pod Security Standard. `make cluster-e2e` (hack/cluster/e2e.sh) runs it
// inside the node's network namespace, where every pod, Service, PostgreSQL
// and emulator address lives; elsewhere the test skips.
package clustere2e
