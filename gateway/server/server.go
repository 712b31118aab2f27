// Package server is the agent-gateway's gRPC service. This part is the
// configuration plane for sync workers: Hello and GetConfig classify the
// caller by its verified certificate, never by request fields, find the
// SyncService it is enrolled as, and serve only its own tenant's sources.
package server

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
)

// Defaults of the intervals the gateway hands out.
const (
	DefaultHeartbeat = 30 * time.Second
	DefaultPoll      = 300 * time.Second
)

// Options configure the server.
type Options struct {
	// Classifier classifies verified peer certificates.
	Classifier identity.Classifier
	// Reader reads Tenants, Namespaces, SyncServices and IntegrationSources
	// (an informer cache in the gateway binary).
	Reader client.Reader
	// Secrets reads the Secrets that sources reference, and no others.
	Secrets client.Reader
	// PlatformSlug is the reserved slug of the platform tenant.
	PlatformSlug string
	// GatewayID names this gateway replica in answers.
	GatewayID string
	// Heartbeat and Poll are the intervals handed to workers.
	Heartbeat, Poll time.Duration
	// Log receives one line per refused call, without secrets.
	Log logr.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Status writes heartbeats to SyncService status by server-side apply.
	Status client.Client
	// HeartbeatWrite bounds steady heartbeat writes per SyncService (default 30 s).
	HeartbeatWrite time.Duration
}

// Server implements monitoring.AgentGatewayService.
type Server struct {
	pb.UnimplementedAgentGatewayServiceServer
	o       Options
	beats   *heartbeats
	changes changes
}

// New returns a server.
func New(o Options) *Server {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HeartbeatWrite <= 0 {
		o.HeartbeatWrite = DefaultHeartbeatWrite
	}
	return &Server{o: o, beats: &heartbeats{c: o.Status, now: o.Now, every: o.HeartbeatWrite, last: map[types.NamespacedName]beat{}}}
}

// refuse logs and returns a gRPC error. Messages name the rule, never
// another tenant's data.
func (s *Server) refuse(id identity.Identity, code codes.Code, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	s.o.Log.Info("refused", "caller", id.String(), "code", code.String(), "reason", msg)
	return status.Error(code, msg)
}

// syncConfig authorizes a sync caller and builds its bundle.
func (s *Server) syncConfig(ctx context.Context, agentID string) (identity.Identity, *v1alpha1.SyncService, bundle.Sync, error) {
	id, in, ss, secretErr, err := s.authorizeSync(ctx, agentID)
	if err != nil {
		return id, nil, bundle.Sync{}, err
	}
	b := bundle.BuildSync(in, ss)
	if *secretErr != nil {
		// Serving the bundle without that source would tell the worker it was removed.
		return id, nil, bundle.Sync{}, status.Error(codes.Unavailable, "reading a credentials Secret failed")
	}
	return id, ss, b, nil
}

// authorizeSync checks that the caller is an enrolled sync worker and returns
// what its bundle is built from and its SyncService.
func (s *Server) authorizeSync(ctx context.Context, agentID string) (identity.Identity, bundle.Inputs, *v1alpha1.SyncService, *error, error) {
	fail := func(id identity.Identity, err error) (identity.Identity, bundle.Inputs, *v1alpha1.SyncService, *error, error) {
		return id, bundle.Inputs{}, nil, nil, err
	}
	id, err := mtls.PeerIdentity(ctx, s.o.Classifier)
	if err != nil {
		return fail(identity.Identity{}, status.Error(codes.Unauthenticated, "no verified client certificate"))
	}
	if agentID != id.ComponentID {
		return fail(id, s.refuse(id, codes.PermissionDenied, "agent_id %q does not match the certificate's component id", agentID))
	}
	if id.IsSPIFFE() && id.ComponentType != identity.ComponentSync {
		return fail(id, s.refuse(id, codes.PermissionDenied, "component type %q may not fetch sync configuration", id.ComponentType))
	}
	tenant, err := s.tenant(ctx, id.TenantSlug)
	if err != nil {
		return fail(id, err)
	}
	if tenant == nil || tenant.Status.TenantID == "" || tenant.Spec.Platform != (id.TenantSlug == s.o.PlatformSlug) {
		return fail(id, s.refuse(id, codes.PermissionDenied, "tenant %q is not onboarded", id.TenantSlug))
	}
	in, secretErr, err := s.inputs(ctx, id, tenant)
	if err != nil {
		return fail(id, err)
	}
	ss := bundle.SyncServiceFor(in, s.o.PlatformSlug)
	// An edge certificate may only act as an OnPrem worker, an SVID only as an
	// in-cluster one, each in its own partition.
	if ss == nil || (ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem) == id.IsSPIFFE() || ss.Spec.Partition != id.Partition {
		return fail(id, s.refuse(id, codes.PermissionDenied, "component not enrolled"))
	}
	return id, in, ss, secretErr, nil
}

func (s *Server) tenant(ctx context.Context, slug string) (*v1alpha1.Tenant, error) {
	var ts v1alpha1.TenantList
	if err := s.o.Reader.List(ctx, &ts); err != nil {
		return nil, status.Error(codes.Unavailable, "reading tenants failed")
	}
	for i := range ts.Items {
		if ts.Items[i].Spec.Slug == slug {
			return &ts.Items[i], nil
		}
	}
	return nil, nil
}

// inputs reads what the caller's bundle is built from. The returned error
// pointer is set when a Secret read fails while the bundle is built.
func (s *Server) inputs(ctx context.Context, id identity.Identity, t *v1alpha1.Tenant) (bundle.Inputs, *error, error) {
	in := bundle.Inputs{TenantSlug: id.TenantSlug, TenantID: t.Status.TenantID, ComponentID: id.ComponentID, NamespaceTenant: map[string]string{}}
	var nss corev1.NamespaceList
	if err := s.o.Reader.List(ctx, &nss, client.HasLabels{v1alpha1.TenantLabel}); err != nil {
		return in, nil, status.Error(codes.Unavailable, "reading namespaces failed")
	}
	for _, ns := range nss.Items {
		in.NamespaceTenant[ns.Name] = ns.Labels[v1alpha1.TenantLabel]
	}
	var sss v1alpha1.SyncServiceList
	if err := s.o.Reader.List(ctx, &sss); err != nil {
		return in, nil, status.Error(codes.Unavailable, "reading sync services failed")
	}
	in.SyncServices = sss.Items
	// Only the caller's own tenant's namespaces are read for sources.
	for ns, slug := range in.NamespaceTenant {
		if slug != id.TenantSlug {
			continue
		}
		var srcs v1alpha1.IntegrationSourceList
		if err := s.o.Reader.List(ctx, &srcs, client.InNamespace(ns)); err != nil {
			return in, nil, status.Error(codes.Unavailable, "reading integration sources failed")
		}
		in.Sources = append(in.Sources, srcs.Items...)
	}
	var readErr error
	in.Secret = func(ns, name string) *corev1.Secret {
		sec := &corev1.Secret{}
		if err := s.o.Secrets.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
			if !apierrors.IsNotFound(err) {
				readErr = err
			}
			return nil
		}
		return sec
	}
	return in, &readErr, nil
}

// Hello accepts a sync worker and tells it whether its config is current.
func (s *Server) Hello(ctx context.Context, req *pb.AgentHelloRequest) (*pb.AgentHelloResponse, error) {
	id, ss, b, err := s.syncConfig(ctx, req.GetAgentId())
	if err != nil {
		return nil, err
	}
	if err := s.beats.record(ctx, ss, req.GetCapabilities(), req.GetVersion(), true); err != nil {
		s.o.Log.Error(err, "recording heartbeat", "caller", id.String())
	}
	_, version, err := bundle.Encode(b)
	if err != nil {
		return nil, status.Error(codes.Internal, "encoding configuration failed")
	}
	return &pb.AgentHelloResponse{
		Accepted: true, AgentId: id.ComponentID, GatewayId: s.o.GatewayID, Message: "welcome",
		ServerTime: s.o.Now().Unix(), HeartbeatIntervalSec: int32(s.o.Heartbeat.Seconds()),
		ConfigOutdated: req.GetConfigVersion() == "" || req.GetConfigVersion() != version,
		TenantId:       b.TenantID, TenantSlug: id.TenantSlug,
	}, nil
}

// GetConfig returns the caller's sync bundle, or not_modified when the
// caller already has its version.
func (s *Server) GetConfig(ctx context.Context, req *pb.AgentConfigRequest) (*pb.AgentConfigResponse, error) {
	_, _, b, err := s.syncConfig(ctx, req.GetAgentId())
	if err != nil {
		return nil, err
	}
	raw, version, err := bundle.Encode(b)
	if err != nil {
		return nil, status.Error(codes.Internal, "encoding configuration failed")
	}
	if req.GetConfigVersion() == version {
		return &pb.AgentConfigResponse{NotModified: true, ConfigVersion: version}, nil
	}
	return &pb.AgentConfigResponse{
		ConfigVersion: version, ConfigTimestamp: s.o.Now().Unix(), ConfigJson: raw,
		HeartbeatIntervalSec: int32(s.o.Heartbeat.Seconds()), ConfigPollIntervalSec: int32(s.o.Poll.Seconds()),
	}, nil
}

// contradicts reports whether a client-sent tenant field names another tenant.
func contradicts(sentID, sentSlug, tenantID, tenantSlug string) bool {
	return (sentID != "" && sentID != tenantID) || (sentSlug != "" && sentSlug != tenantSlug)
}

// PushStatus records a worker's heartbeat on its SyncService. Tenant fields
// in the request are ignored when they agree with the certificate and refuse
// the call when they contradict it.
func (s *Server) PushStatus(ctx context.Context, req *pb.GatewayStatusRequest) (*pb.GatewayStatusResponse, error) {
	id, in, ss, _, err := s.authorizeSync(ctx, req.GetAgentId())
	if err != nil {
		return nil, err
	}
	bad := contradicts(req.GetTenantId(), req.GetTenantSlug(), in.TenantID, id.TenantSlug)
	for _, svc := range req.GetServices() {
		bad = bad || contradicts(svc.GetTenantId(), svc.GetTenantSlug(), in.TenantID, id.TenantSlug)
	}
	if bad {
		return nil, s.refuse(id, codes.PermissionDenied, "tenant fields in the request contradict the certificate")
	}
	if err := s.beats.record(ctx, ss, nil, "", false); err != nil {
		s.o.Log.Error(err, "recording heartbeat", "caller", id.String())
		return nil, status.Error(codes.Unavailable, "recording the heartbeat failed")
	}
	return &pb.GatewayStatusResponse{Received: true}, nil
}
