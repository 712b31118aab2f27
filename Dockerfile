# One image with the three static binaries: manager, gateway and worker.
# Build: make docker-build (VERSION and COMMIT are stamped into the binaries).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY gateway/ gateway/
COPY identity/ identity/
COPY platform/ platform/
COPY proto/ proto/
COPY version/ version/
COPY workers/ workers/
COPY workload/ workload/
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
