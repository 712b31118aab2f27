# One image with the three static binaries: manager, gateway and worker.
# Build: make docker-build (VERSION and COMMIT are stamped into the binaries), or
# without a container daemon: make image (the same layout, assembled by hack/tools/image).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# The whole module (.dockerignore leaves out bin/, .git and build output), so
# the build cannot fall out of step with the packages the binaries import
# (test/image checks this against `go list -deps ./cmd/...`).
COPY . .
ARG VERSION=dev
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/serviceradar/sync-operator/version.Version=${VERSION} -X github.com/serviceradar/sync-operator/version.Commit=${COMMIT}" \
      -o /out/ ./cmd/manager ./cmd/gateway ./cmd/worker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/manager /out/gateway /out/worker /
# 65532: the worker Deployments' runAsUser; no shell, no package manager.
USER 65532:65532
ENTRYPOINT ["/manager"]
