// Package server is the agent-gateway's gRPC service. This part is the
// configuration plane for sync workers: Hello and GetConfig classify the
// caller by its verified certificate, never by request fields, find the
// SyncService it is enrolled as, and serve only its own tenant's sources.
package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/gateway/catalog"
	"github.com/serviceradar/sync-operator/gateway/events"
	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/gateway/sourcemetrics"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
)

// Defaults of the intervals the gateway hands out.
const (
	DefaultHeartbeat = 30 * time.Second
	DefaultPoll      = 300 * time.Second
)

// Keepalive is how the gateway treats idle connections: which client
// pings it accepts, and how it pings quiet clients itself to find dead ones.
type Keepalive struct {
	// MinPingInterval is the shortest time between two client pings the
	// gateway accepts, also on a connection without an active call; a
	// client that pings more often is sent GOAWAY too_many_pings.
	MinPingInterval time.Duration
	// Time is how long a connection may stay without any activity before the
	// gateway pings the client; Timeout how long it then waits for the
	// acknowledgement before it closes the connection.
	Time, Timeout time.Duration
}

// DefaultKeepalive accepts ServiceRadar agents as they are: they ping every
// 30 s (10 s timeout) even with no call open, and grpc-go's default policy
// (at most one ping in 5 minutes) disconnects them after about 90 s. Half
// their interval leaves room for timer jitter; the gateway's own pings find a
// vanished client within Time+Timeout.
var DefaultKeepalive = Keepalive{MinPingInterval: 15 * time.Second, Time: 2 * time.Minute, Timeout: 20 * time.Second}

// WithDefaults fills zero fields from DefaultKeepalive.
func (k Keepalive) WithDefaults() Keepalive {
	if k.MinPingInterval <= 0 {
		k.MinPingInterval = DefaultKeepalive.MinPingInterval
	}
	if k.Time <= 0 {
		k.Time = DefaultKeepalive.Time
	}
	if k.Timeout <= 0 {
		k.Timeout = DefaultKeepalive.Timeout
	}
	return k
}

// EnforcementPolicy is the policy a gRPC server enforces on client pings.
func (k Keepalive) EnforcementPolicy() keepalive.EnforcementPolicy {
	return keepalive.EnforcementPolicy{MinTime: k.MinPingInterval, PermitWithoutStream: true}
}

// ServerParameters are the gateway's own pings, with the connection
// lifetimes of params (MaxConnectionAge and its grace) kept.
func (k Keepalive) ServerParameters(params keepalive.ServerParameters) keepalive.ServerParameters {
	params.Time, params.Timeout = k.Time, k.Timeout
	return params
}

// Options configure the server.
type Options struct {
	// Classifier classifies verified peer certificates.
	Classifier identity.Classifier
	// Reader reads Tenants, Namespaces, SyncServices and IntegrationSources:
	// the informer cache that WatchCluster watches.
	Reader client.Reader
	// Secrets watches the Secrets that sources reference, each by name, and
	// no others.
	Secrets corev1client.SecretsGetter
	// PlatformSlug is the reserved slug of the platform tenant.
	PlatformSlug string
	// GatewayID names this gateway replica in answers.
	GatewayID string
	// Heartbeat and Poll are the intervals handed to workers.
	Heartbeat, Poll time.Duration
	// Log receives one line per refused call, without secrets.
	Log logr.Logger
	// Clock is the server's clock: certificate validity per call, the
	// expiry of open ControlStreams, StreamStatus read deadlines and
	// heartbeat times; nil means the real clock.
	Clock clock.WithDelayedExecution
	// Status writes heartbeats to SyncService status by server-side apply.
	Status client.Client
	// HeartbeatWrite bounds steady heartbeat writes per SyncService, across
	// replicas (default 30 s).
	HeartbeatWrite time.Duration
	// Metrics are the configuration plane's metrics; nil means unregistered ones.
	Metrics *Metrics
	// Store holds the tenants' devices; nil refuses StreamStatus.
	Store *store.Store
	// Limits bound one StreamStatus call (zero means ingest.DefaultLimits);
	// MaxBytes counts every byte of every chunk (proto.Size).
	Limits ingest.Limits
	// Admission bounds what all calls hold at once (zero fields take
	// DefaultAdmission).
	Admission Admission
	// Events records the gateway's Kubernetes events: finished runs, held
	// retractions, refused edge certificates (nil: none).
	Events *events.Recorder
	// Sources are the per-source metrics that finished runs are counted in
	// (nil: not counted).
	Sources *sourcemetrics.Metrics
}

// Server implements monitoring.AgentGatewayService.
type Server struct {
	pb.UnimplementedAgentGatewayServiceServer
	o         Options
	beats     *heartbeats
	catalog   *catalog.Catalog
	draining  chan struct{}
	drainOnce sync.Once
	// statusStreams and controlStreams count open calls; ingest is the
	// memory StreamStatus calls may hold.
	statusStreams, controlStreams *slots
	ingest                        *budget
	// commands reaches the ControlStreams open on this replica.
	commands commandRouter
	// renewals wakes ControlStreams waiting for a certificate renewal.
	renewals renewalWaiters
}

// New returns a server.
func New(o Options) *Server {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Limits == (ingest.Limits{}) {
		o.Limits = ingest.DefaultLimits
	}
	if o.HeartbeatWrite <= 0 {
		o.HeartbeatWrite = DefaultHeartbeatWrite
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	o.Admission = o.Admission.WithDefaults()
	a := o.Admission
	return &Server{
		o: o, draining: make(chan struct{}), catalog: catalog.New(o.Reader, o.Secrets, o.PlatformSlug),
		statusStreams:  newSlots(a.StatusStreams, a.StatusStreamsPerCaller),
		controlStreams: newSlots(a.ControlStreams, a.ControlStreamsPerCaller),
		ingest:         newBudget(a.IngestBytes, a.IngestBytesPerCaller, func(n int64) { o.Metrics.IngestHeldBytes.Add(float64(n)) }),
		beats:          &heartbeats{c: o.Status, r: o.Reader, now: o.Clock.Now, every: o.HeartbeatWrite, writes: o.Metrics.HeartbeatWrites, last: map[types.UID]beat{}},
	}
}

// refuse logs and returns a gRPC error. Messages name the rule, never
// another tenant's data, and carry at most MaxLoggedBytes of anything a
// client sent (in the log line and in the answer).
func (s *Server) refuse(id identity.Identity, code codes.Code, format string, args ...any) error {
	msg := Clip(fmt.Sprintf(format, args...))
	s.o.Log.Info("refused", "caller", Clip(id.String()), "code", code.String(), "reason", msg)
	return status.Error(code, msg)
}

// MaxLoggedBytes bounds a client-supplied string in a log line or a refusal.
const MaxLoggedBytes = 128

// clipMarker ends a clipped string.
const clipMarker = "...[clipped]"

// Clip bounds s to MaxLoggedBytes (valid UTF-8 kept valid), marking a cut.
func Clip(s string) string {
	if len(s) <= MaxLoggedBytes {
		return s
	}
	return strings.ToValidUTF8(s[:MaxLoggedBytes-len(clipMarker)], "") + clipMarker
}

// peer is the caller's verified identity, its certificate chain still
// valid on the server's clock.
func (s *Server) peer(ctx context.Context) (identity.Identity, error) {
	return mtls.PeerIdentityAt(ctx, s.o.Classifier, s.o.Clock.Now()) //nolint:wrapcheck // callers map it to Unauthenticated
}

// unauthenticated is the answer to a caller without a valid certificate;
// an expired one is logged.
func (s *Server) unauthenticated(err error) error {
	if errors.Is(err, mtls.ErrCertificateExpired) {
		s.o.Log.Info("refused", "code", codes.Unauthenticated.String(), "reason", err.Error())
		return status.Error(codes.Unauthenticated, "the client certificate has expired or is not yet valid")
	}
	return status.Error(codes.Unauthenticated, "no verified client certificate")
}

// syncConfig authorizes a sync caller and returns its catalog entry: its
// SyncService, tenant id and bundle.
func (s *Server) syncConfig(ctx context.Context, agentID string) (identity.Identity, *catalog.Entry, error) {
	id, err := s.peer(ctx)
	if err != nil {
		return identity.Identity{}, nil, s.unauthenticated(err)
	}
	if agentID != id.ComponentID {
		return id, nil, s.agentMismatch(id)
	}
	e, err := s.syncEntry(ctx, id)
	return id, e, err
}

// agentMismatch refuses a request whose agent_id is not the caller's
// component id. The message does not echo agent_id: it may name another
// tenant's component.
func (s *Server) agentMismatch(id identity.Identity) error {
	return s.refuse(id, codes.PermissionDenied, "agent_id does not match the certificate's component id")
}

// syncEntry authorizes the certificate identity of a sync caller and
// returns its catalog entry: its SyncService, tenant id and bundle.
func (s *Server) syncEntry(ctx context.Context, id identity.Identity) (*catalog.Entry, error) {
	if id.IsSPIFFE() && id.ComponentType != identity.ComponentSync {
		return nil, s.refuse(id, codes.PermissionDenied, "component type %q may not fetch sync configuration", id.ComponentType)
	}
	e, err := s.catalog.Sync(ctx, id)
	switch {
	case errors.Is(err, catalog.ErrTenantNotOnboarded):
		return nil, s.refuse(id, codes.PermissionDenied, "tenant %q is not onboarded", id.TenantSlug)
	case errors.Is(err, catalog.ErrRevoked):
		s.certificateRefused(ctx, id, "it was issued before the SyncService's edge identity was issued again (status.edgeIdentitySince); run the edge worker with the current onboarding bundle")
		return nil, s.refuse(id, codes.PermissionDenied, "certificate revoked: its SyncService's edge identity was issued again; use the current onboarding bundle")
	case errors.Is(err, catalog.ErrUntrustedIssuer):
		s.certificateRefused(ctx, id, "it was not issued by the tenant's current certificate authority (a Tenant of the same slug was deleted and created again); run the edge worker with the current onboarding bundle")
		return nil, s.refuse(id, codes.PermissionDenied, "component not enrolled")
	case errors.Is(err, catalog.ErrNotEnrolled):
		return nil, s.refuse(id, codes.PermissionDenied, "component not enrolled")
	case err != nil:
		s.o.Log.Error(err, "building configuration", "caller", id.String())
		return nil, status.Error(codes.Unavailable, "reading the configuration failed")
	}
	return e, nil
}

// certificateRefused records a Warning event on the SyncService that a
// refused edge certificate names, when one does.
func (s *Server) certificateRefused(ctx context.Context, id identity.Identity, why string) {
	if id.IsSPIFFE() || !s.o.Events.CertificateAllowed(id.String()) {
		return
	}
	ss, err := s.catalog.Named(ctx, id)
	if err != nil {
		s.o.Log.Error(err, "finding the SyncService of a refused certificate", "caller", Clip(id.String()))
		return
	}
	s.o.Events.CertificateRefused(ss, why)
}

// Hello accepts a sync worker and tells it whether its config is current.
func (s *Server) Hello(ctx context.Context, req *pb.AgentHelloRequest) (*pb.AgentHelloResponse, error) {
	if id, err := s.peer(ctx); err == nil && s.isAgentCaller(ctx, id) {
		cfg, tenantID, err := s.agentConfig(ctx, id, req.GetAgentId())
		if err != nil {
			return nil, err
		}
		return &pb.AgentHelloResponse{
			Accepted: true, AgentId: id.ComponentID, GatewayId: s.o.GatewayID, Message: "welcome",
			ServerTime: s.o.Clock.Now().Unix(), HeartbeatIntervalSec: int32(s.o.Heartbeat.Seconds()),
			ConfigOutdated: req.GetConfigVersion() == "" || req.GetConfigVersion() != cfg.ConfigVersion,
			TenantId:       tenantID, TenantSlug: id.TenantSlug,
		}, nil
	}
	id, e, err := s.syncConfig(ctx, req.GetAgentId())
	if err != nil {
		return nil, err
	}
	if err := s.beats.record(ctx, e.SyncService, req.GetCapabilities(), req.GetVersion(), true); err != nil {
		s.o.Log.Error(err, "recording heartbeat", "caller", id.String())
	}
	return &pb.AgentHelloResponse{
		Accepted: true, AgentId: id.ComponentID, GatewayId: s.o.GatewayID, Message: "welcome",
		ServerTime: s.o.Clock.Now().Unix(), HeartbeatIntervalSec: int32(s.o.Heartbeat.Seconds()),
		ConfigOutdated: req.GetConfigVersion() == "" || req.GetConfigVersion() != e.Version,
		TenantId:       e.TenantID, TenantSlug: id.TenantSlug,
	}, nil
}

// GetConfig returns the caller's sync bundle, or not_modified when the
// caller already has its version.
func (s *Server) GetConfig(ctx context.Context, req *pb.AgentConfigRequest) (*pb.AgentConfigResponse, error) {
	if id, err := s.peer(ctx); err == nil && s.isAgentCaller(ctx, id) {
		cfg, _, err := s.agentConfig(ctx, id, req.GetAgentId())
		if err != nil {
			return nil, err
		}
		if req.GetConfigVersion() == cfg.ConfigVersion {
			return &pb.AgentConfigResponse{NotModified: true, ConfigVersion: cfg.ConfigVersion}, nil
		}
		return cfg, nil
	}
	_, e, err := s.syncConfig(ctx, req.GetAgentId())
	if err != nil {
		return nil, err
	}
	if req.GetConfigVersion() == e.Version {
		return &pb.AgentConfigResponse{NotModified: true, ConfigVersion: e.Version}, nil
	}
	return s.configResponse(e), nil
}

// configResponse is the full answer carrying an entry's bundle.
func (s *Server) configResponse(e *catalog.Entry) *pb.AgentConfigResponse {
	return &pb.AgentConfigResponse{
		ConfigVersion: e.Version, ConfigTimestamp: s.o.Clock.Now().Unix(), ConfigJson: e.Raw,
		HeartbeatIntervalSec: int32(s.o.Heartbeat.Seconds()), ConfigPollIntervalSec: int32(s.o.Poll.Seconds()),
	}
}

// contradicts reports whether a client-sent tenant field names another tenant.
func contradicts(sentID, sentSlug, tenantID, tenantSlug string) bool {
	return (sentID != "" && sentID != tenantID) || (sentSlug != "" && sentSlug != tenantSlug)
}

// PushStatus records a worker's heartbeat on its SyncService. Tenant fields
// in the request are ignored when they agree with the certificate and refuse
// the call when they contradict it.
func (s *Server) PushStatus(ctx context.Context, req *pb.GatewayStatusRequest) (*pb.GatewayStatusResponse, error) {
	if resp, ok, err := s.agentPush(ctx, req); ok {
		return resp, err
	}
	id, e, err := s.syncConfig(ctx, req.GetAgentId())
	if err != nil {
		return nil, err
	}
	bad := contradicts(req.GetTenantId(), req.GetTenantSlug(), e.TenantID, id.TenantSlug)
	for _, svc := range req.GetServices() {
		bad = bad || contradicts(svc.GetTenantId(), svc.GetTenantSlug(), e.TenantID, id.TenantSlug)
		if svc.GetAgentId() != "" && svc.GetAgentId() != id.ComponentID {
			return nil, s.refuse(id, codes.PermissionDenied, "services[].agent_id does not match the certificate's component id")
		}
	}
	if bad {
		return nil, s.refuse(id, codes.PermissionDenied, "tenant fields in the request contradict the certificate")
	}
	if err := s.beats.record(ctx, e.SyncService, nil, "", false); err != nil {
		s.o.Log.Error(err, "recording heartbeat", "caller", id.String())
		return nil, status.Error(codes.Unavailable, "recording the heartbeat failed")
	}
	return &pb.GatewayStatusResponse{Received: true}, nil
}
