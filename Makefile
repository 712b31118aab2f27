# Sync operator: build, generate, test and demo. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN        := $(CURDIR)/bin
K8S_VERSION ?= v1.37.2
ENVTEST_DIR := $(BIN)/k8s-$(K8S_VERSION)
TOOLS      := $(CURDIR)/hack/tools

CONTROLLER_GEN      := $(BIN)/controller-gen
PROTOC_GEN_GO       := $(BIN)/protoc-gen-go
PROTOC_GEN_GO_GRPC  := $(BIN)/protoc-gen-go-grpc
GOLANGCI_LINT       := $(BIN)/golangci-lint

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -s -w -X github.com/serviceradar/sync-operator/version.Version=$(VERSION) -X github.com/serviceradar/sync-operator/version.Commit=$(COMMIT)
IMAGE   ?= ghcr.io/serviceradar/sync-operator:$(VERSION)

export TEST_ASSET_KUBE_APISERVER ?= $(ENVTEST_DIR)/kube-apiserver
export TEST_ASSET_ETCD           ?= $(ENVTEST_DIR)/etcd
export TEST_ASSET_KUBECTL        ?= $(ENVTEST_DIR)/kubectl

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n",$$1,$$2}'

.PHONY: build
build: ## Compile every package, and the manager, gateway and worker (version-stamped) into bin/.
	go build ./...
	CGO_ENABLED=0 go build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

.PHONY: docker-build
docker-build: ## Build the image (one image, three static binaries, non-root) with docker or podman.
	$$(command -v docker || command -v podman) build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

IMAGE_REPO ?= localhost/serviceradar/sync-operator
IMAGE_DIR  ?= $(BIN)/image

.PHONY: image
image: ## Assemble the image without a container daemon: $(IMAGE_DIR)/sync-operator.tar (docker-archive, for `ctr images import`).
	mkdir -p $(IMAGE_DIR)
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(IMAGE_DIR)/ ./cmd/manager ./cmd/gateway ./cmd/worker
	cd $(TOOLS)/image && go run . --bin-dir $(IMAGE_DIR) --out $(IMAGE_DIR)/sync-operator.tar \
		--tag $(IMAGE_REPO):$(VERSION) --version $(VERSION) --commit $(COMMIT)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRDs into config/crd/bases, the RBAC of the manager (config/rbac) and gateway (config/rbac/gateway), and the Argo CD health checks.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=sync-operator-manager paths=./controllers/... output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=sync-operator-gateway paths=./gateway/... output:rbac:artifacts:config=config/rbac/gateway
	@# The chart and the kustomize bases carry copies of the generated files.
	cp config/crd/bases/*.yaml charts/sync-operator/files/crds/
	cp config/rbac/role.yaml config/manager/role.yaml
	cp config/rbac/role.yaml charts/sync-operator/files/rbac/role.yaml
	cp config/rbac/gateway/role.yaml config/gateway/role.yaml
	cp config/rbac/gateway/role.yaml charts/sync-operator/files/rbac/gateway/role.yaml
	@# The Argo CD health checks, from the shared part and each kind's blocks.
	go run ./hack/healthgen/cmd/healthgen -out charts/sync-operator/argocd

.PHONY: proto
proto: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) ## Generate Go code from proto/monitoring.proto.
	./hack/protoc.sh

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) ## Fail when regenerating changes a committed file.
	./hack/verify-generated.sh

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, etcd and kubectl from Go modules into bin/ (once).
	K8S_VERSION=$(K8S_VERSION) ENVTEST_DIR=$(ENVTEST_DIR) ./hack/envtest-assets.sh >/dev/null

.PHONY: spire-assets
spire-assets: ## Build spire-server and spire-agent from Go modules into bin/ (once).
	./hack/spire-assets.sh >/dev/null

.PHONY: promtool-assets
promtool-assets: ## Build promtool from the Prometheus Go module into bin/ (once), for the alerting rule tests.
	./hack/promtool-assets.sh >/dev/null

.PHONY: test
test: envtest-assets spire-assets promtool-assets ## Run all tests against a real API server, SPIRE and PostgreSQL; as root also `make cluster-e2e`.
	./hack/test.sh
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory cluster-e2e; \
	else echo "make test: skipping make cluster-e2e (the chart on a real node), which needs root: sudo make cluster-e2e"; fi

.PHONY: demo
demo: envtest-assets ## Run the main job: local control plane, CRDs, samples, status.
	./hack/demo.sh

.PHONY: demo-edge
demo-edge: envtest-assets ## make demo plus an OnPrem SyncService whose worker runs from its extracted onboarding bundle alone and renews its certificate.
	DEMO_EDGE=1 ./hack/demo.sh

.PHONY: demo-down
demo-down: ## Stop what `make demo` or `make demo-edge` started.
	./hack/demo.sh down

$(CONTROLLER_GEN):
	cd $(TOOLS)/dev && go build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen
$(PROTOC_GEN_GO):
	cd $(TOOLS)/dev && go build -o $@ google.golang.org/protobuf/cmd/protoc-gen-go
$(PROTOC_GEN_GO_GRPC):
	cd $(TOOLS)/dev && go build -o $@ google.golang.org/grpc/cmd/protoc-gen-go-grpc
$(GOLANGCI_LINT):
	cd $(TOOLS)/lint && go build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

.PHONY: bench
bench: envtest-assets ## Print benchmark figures (control-plane start time, results decode per 5,000-device segment).
	go test -run='^$$' -bench=. -benchtime=3x ./test/kubetest/
	go test -run='^$$' -bench=. -benchmem ./wire/results/

.PHONY: bench-identity
bench-identity: ## Print classification ns/op and mTLS handshakes per second (RESULT line).
	./hack/bench-identity.sh

.PHONY: fuzz
fuzz: ## Fuzz the identity parsers for FUZZTIME each (default 3000000x executions, about 2 minutes; a count, since a duration can fail a clean run before Go 1.27: go.dev/issue/75804).
	go test -run='^$$' -fuzz=FuzzClassifyCommonName -fuzztime=$${FUZZTIME:-3000000x} ./identity/
	go test -run='^$$' -fuzz=FuzzClassifySPIFFEID -fuzztime=$${FUZZTIME:-3000000x} ./identity/

.PHONY: bench-operator
bench-operator: envtest-assets ## 500 tenants x 4 sources on a real API server: convergence, steady writes, RSS (RESULT line).
	go run ./hack/bench-operator $(BENCH_OPERATOR_FLAGS)

.PHONY: bench-ingest
bench-ingest: envtest-assets ## 50,000 devices over mTLS gRPC into the gateway and PostgreSQL: devices/s, vs raw COPY, 5% churn cycle, RSS (RESULT line).
	go build -o $(BIN)/gateway ./cmd/gateway
	go run ./hack/bench-ingest --gateway $(BIN)/gateway $(BENCH_INGEST_FLAGS)

.PHONY: bench-hostile
bench-hostile: envtest-assets ## 50 hostile callers (unknown tenant, enrolled abuser) vs a 50,000-device worker run, gateway binary: run completed, peak RSS (RESULT line).
	go build -o $(BIN)/gateway ./cmd/gateway
	go run ./hack/bench-hostile --gateway $(BIN)/gateway $(BENCH_HOSTILE_FLAGS)

.PHONY: bench-upstream
bench-upstream: envtest-assets ## 1,000,000 devices in ONE upstream array-form call (sync_meta, 3 MiB chunks) into the gateway binary: devices/s, gateway peak RSS (RESULT line).
	go build -o $(BIN)/gateway ./cmd/gateway
	go run ./hack/bench-upstream --gateway $(BIN)/gateway $(BENCH_UPSTREAM_FLAGS)

.PHONY: bench-worker
bench-worker: envtest-assets ## Worker syncing a 1,000,000-device Armis emulator into gateway + PostgreSQL, then Faker 50k: devices/s, worker RSS (RESULT line).
	go build -o $(BIN)/gateway ./cmd/gateway
	go build -o $(BIN)/worker ./cmd/worker
	go run ./hack/bench-worker --gateway $(BIN)/gateway --worker $(BIN)/worker $(BENCH_WORKER_FLAGS)

.PHONY: bench-gateway
bench-gateway: envtest-assets ## 1000 tenants x 3 sources, gateway binary over mTLS: GetConfig rps/p99, push p99, RSS (RESULT line).
	go build -o $(BIN)/gateway ./cmd/gateway
	go run ./hack/bench-gateway --gateway $(BIN)/gateway $(BENCH_GATEWAY_FLAGS)

.PHONY: bench-scale
bench-scale: envtest-assets ## Scale curves, gateway binary over mTLS: 1-300 tenants streaming at once, 10k-1M-device inventories with churn, 10-1000 tenant schemas (RESULT lines, SVG plots in $(BIN)/bench-scale).
	go build -o $(BIN)/gateway ./cmd/gateway
	go run ./hack/bench-scale --gateway $(BIN)/gateway --out $(BIN)/bench-scale $(BENCH_SCALE_FLAGS)

.PHONY: cluster
cluster: ## As root: a real single-node cluster (kubelet, containerd, kube-proxy) in its own network namespace; proves it with pods of `make image`.
	@[ "$$(id -u)" = 0 ] || { echo "make cluster must run as root (namespaces, cgroups, containerd, kubelet): sudo make cluster" >&2; exit 1; }
	$(MAKE) --no-print-directory image
	./hack/cluster/up.sh

.PHONY: cluster-e2e
cluster-e2e: ## As root: the chart from the local image on a fresh `make cluster` node: install, sync 3 sources, pod deletions, upgrade, uninstall.
	@[ "$$(id -u)" = 0 ] || { echo "make cluster-e2e must run as root (it runs make cluster): sudo make cluster-e2e" >&2; exit 1; }
	$(MAKE) --no-print-directory image
	./hack/cluster/e2e.sh

.PHONY: cluster-down
cluster-down: ## Stop everything `make cluster` started (by PID) and restore the machine.
	./hack/cluster/down.sh
