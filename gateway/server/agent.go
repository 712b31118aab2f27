package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/gateway/catalog"
	"github.com/serviceradar/sync-operator/gateway/ingest"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/gateway/sweep"
	"github.com/serviceradar/sync-operator/identity"
	pb "github.com/serviceradar/sync-operator/proto"
	wire "github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
)

// isAgent reports whether a verified caller is a ServiceRadar agent.
func isAgent(id identity.Identity) bool {
	return id.IsSPIFFE() && id.ComponentType == identity.ComponentAgent
}

// agentConfig is the full configuration of an agent: its identity in
// config_json and the sweep derived from its tenant's devices in its
// partition; the version covers both.
func (s *Server) agentConfig(ctx context.Context, id identity.Identity, agentID string) (*pb.AgentConfigResponse, string, error) {
	if agentID != id.ComponentID {
		return nil, "", s.refuse(id, codes.PermissionDenied, "agent_id does not match the certificate's component id")
	}
	tenantID, sources, err := s.catalog.Agent(ctx, id)
	switch {
	case errors.Is(err, catalog.ErrTenantNotOnboarded):
		return nil, "", s.refuse(id, codes.PermissionDenied, "tenant %q is not onboarded", id.TenantSlug)
	case err != nil:
		s.o.Log.Error(err, "building agent configuration", "caller", id.String())
		return nil, "", status.Error(codes.Unavailable, "reading the configuration failed")
	}
	var targets []store.Target
	if s.o.Store != nil && len(sources) > 0 {
		uids := make([]string, len(sources))
		for i, src := range sources {
			uids[i] = src.UID
		}
		if targets, err = s.o.Store.SweepTargets(ctx, id.TenantSlug, id.Partition, uids); err != nil {
			s.o.Log.Error(err, "reading sweep targets", "caller", id.String())
			return nil, "", status.Error(codes.Unavailable, "reading sweep targets failed")
		}
	}
	sw := sweep.Build(sources, targets)
	raw, _, err := wire.Encode(wire.Agent{AgentID: id.ComponentID, Scope: wire.ScopeAgent, TenantID: tenantID, TenantSlug: id.TenantSlug, Partition: id.Partition,
		Sweep: sweep.Groups(sources, targets)})
	if err != nil {
		return nil, "", status.Error(codes.Internal, "encoding configuration failed")
	}
	swRaw, err := proto.MarshalOptions{Deterministic: true}.Marshal(sw)
	if err != nil {
		return nil, "", status.Error(codes.Internal, "encoding sweep failed")
	}
	sum := sha256.Sum256(append(append(raw, 0), swRaw...))
	version := hex.EncodeToString(sum[:16])
	return &pb.AgentConfigResponse{
		ConfigVersion: version, ConfigTimestamp: s.o.Clock.Now().Unix(), ConfigJson: raw, Sweep: sw,
		HeartbeatIntervalSec: int32(s.o.Heartbeat.Seconds()), ConfigPollIntervalSec: int32(s.o.Poll.Seconds()),
	}, tenantID, nil
}

// statusCaller authorizes a PushStatus or StreamStatus caller: an enrolled
// sync worker (its catalog entry), or an agent of an onboarded tenant (its
// tenant id, the entry nil). An agent is a SPIFFE identity of type agent,
// or an edge certificate in ServiceRadar's own format (CN
// <component>.<partition>.serviceradar, mapped to a tenant by the opt-in
// upstream setting) whose component id is no SyncService's. A certificate
// in our own edge format names a SyncService: the manager issues them for
// OnPrem SyncServices only, so one whose SyncService is gone is the
// identity of a deleted SyncService, refused like any other that is not
// enrolled, never promoted to an agent. An edge identity that matches two
// SyncServices is neither.
func (s *Server) statusCaller(ctx context.Context, id identity.Identity) (*catalog.Entry, string, error) {
	if s.isAgentCaller(ctx, id) {
		tenantID, err := s.agentTenant(ctx, id)
		return nil, tenantID, err
	}
	e, err := s.syncEntry(ctx, id)
	return e, "", err
}

// isAgentCaller reports whether a verified caller is served as an agent
// (Hello, GetConfig and ControlStream get the agent configuration with its
// sweep; PushStatus and StreamStatus take agent status and sweep results):
// an SVID of type agent, or an edge agent. Both get exactly their own
// tenant's and partition's sweep, from the certificate.
func (s *Server) isAgentCaller(ctx context.Context, id identity.Identity) bool {
	return isAgent(id) || id.Upstream && !id.IsSPIFFE() && s.edgeAgent(ctx, id)
}

// edgeAgent reports whether an edge identity is an agent: its certificate
// is of its tenant's current CA and it is enrolled as no SyncService.
func (s *Server) edgeAgent(ctx context.Context, id identity.Identity) bool {
	_, err := s.catalog.Sync(ctx, id)
	return errors.Is(err, catalog.ErrNotEnrolled) && !errors.Is(err, catalog.ErrUntrustedIssuer) && !errors.Is(err, bundle.ErrAmbiguous)
}

// agentTenant is the tenant id of an agent, whose tenant must be onboarded.
func (s *Server) agentTenant(ctx context.Context, id identity.Identity) (string, error) {
	tenantID, _, err := s.catalog.Agent(ctx, id)
	switch {
	case errors.Is(err, catalog.ErrTenantNotOnboarded):
		return "", s.refuse(id, codes.PermissionDenied, "tenant %q is not onboarded", id.TenantSlug)
	case err != nil:
		s.o.Log.Error(err, "reading the agent's tenant", "caller", id.String())
		return "", status.Error(codes.Unavailable, "reading the configuration failed")
	}
	return tenantID, nil
}

// agentPush answers an agent's PushStatus (ok false: the caller is not an
// agent, and PushStatus serves it as a worker): acknowledged, and recorded
// as the agent's last-seen time with the runtime it reports (version,
// hostname, os, arch, config source). Its services' status is not ingested.
// Tenant and agent fields that contradict the certificate are refused, as
// a worker's are.
func (s *Server) agentPush(ctx context.Context, req *pb.GatewayStatusRequest) (*pb.GatewayStatusResponse, bool, error) {
	id, err := s.peer(ctx)
	if err != nil {
		// PushStatus answers the caller as a worker: Unauthenticated.
		return nil, false, nil //nolint:nilerr // not an agent: the worker path answers
	}
	if !s.isAgentCaller(ctx, id) {
		return nil, false, nil
	}
	if req.GetAgentId() != id.ComponentID {
		return nil, true, s.agentMismatch(id)
	}
	tenantID, err := s.agentTenant(ctx, id)
	if err != nil {
		return nil, true, err
	}
	bad := contradicts(req.GetTenantId(), req.GetTenantSlug(), tenantID, id.TenantSlug) || req.GetPartition() != "" && req.GetPartition() != id.Partition
	for _, svc := range req.GetServices() {
		bad = bad || contradicts(svc.GetTenantId(), svc.GetTenantSlug(), tenantID, id.TenantSlug)
		if svc.GetAgentId() != "" && svc.GetAgentId() != id.ComponentID {
			return nil, true, s.refuse(id, codes.PermissionDenied, "services[].agent_id does not match the certificate's component id")
		}
	}
	if bad {
		return nil, true, s.refuse(id, codes.PermissionDenied, "tenant or partition fields in the request contradict the certificate")
	}
	if s.o.Store != nil {
		a := store.Agent{Partition: id.Partition, AgentID: id.ComponentID, LastSeen: s.o.Clock.Now(),
			Version: req.GetVersion(), Hostname: req.GetHostname(), OS: req.GetOs(), Arch: req.GetArch(), ConfigSource: req.GetConfigSource()}
		if err := s.o.Store.RecordAgent(ctx, id.TenantSlug, a); err != nil {
			var invalid *store.InvalidSegmentError
			if errors.As(err, &invalid) {
				return nil, true, s.refuse(id, codes.InvalidArgument, "the status can never be stored: %s", invalid.Reason)
			}
			s.o.Log.Error(err, "recording agent status", "caller", id.String())
			return nil, true, status.Error(codes.Unavailable, "recording the status failed")
		}
	}
	s.o.Metrics.AgentStatus.Inc()
	return &pb.GatewayStatusResponse{Received: true}, true, nil
}

// agentStream reads an agent's StreamStatus call chunk by chunk under the
// stream rules. Sweep results (service type "sweep") update the
// availability and last-seen of the devices of the agent's tenant and
// partition whose IP was swept, one transaction per chunk (an IP that is
// no device's is ignored); every other service is acknowledged and dropped
// with a metric, never refused: a refusal makes an upstream agent
// reconnect and send it again, forever. Each chunk's charge is given back
// once it has been handled.
func (s *Server) agentStream(stream pb.AgentGatewayService_StreamStatusServer, r *reader, lim ingest.Limits) error {
	in := r.in
	id := in.id
	rd := ingest.NewRawReader(in.next, lim)
	for {
		ch, err := rd.Next()
		if errors.Is(err, io.EOF) {
			r.deadline.Stop()
			return stream.SendAndClose(&pb.GatewayStatusResponse{Received: true}) //nolint:wrapcheck // the stream's own status
		}
		if err := r.done(err); err != nil {
			return err
		}
		for _, svc := range ch.Services {
			if svc.GetServiceType() != results.SweepServiceType {
				s.o.Metrics.AgentServicesDropped.Inc()
				continue
			}
			if err := s.applySweep(r.ctx, id, ch.Index, svc.GetMessage()); err != nil {
				return err
			}
		}
		in.release()
		r.again()
	}
}

// applySweep applies one sweep results message of an agent to its tenant's
// devices in its partition (never another's: both come from its certificate).
func (s *Server) applySweep(ctx context.Context, id identity.Identity, chunk int, raw []byte) error {
	hosts, err := results.ParseSweep(raw)
	if err != nil {
		// Results the gateway cannot read are dropped, not refused: the
		// agent would send them again, forever.
		s.o.Log.Info("sweep results dropped", "caller", Clip(id.String()), "chunk", chunk, "reason", Clip(err.Error()))
		s.o.Metrics.AgentServicesDropped.Inc()
		return nil
	}
	swept := make([]store.Swept, 0, len(hosts))
	for _, h := range hosts {
		swept = append(swept, store.Swept{IP: h.Address(), Available: h.Up()})
	}
	actx, cancel := context.WithTimeoutCause(ctx, s.o.Admission.ApplyTimeout, errApplyTimeout)
	defer cancel()
	out, err := s.o.Store.ApplySweep(actx, id.TenantSlug, id.Partition, swept, s.o.Clock.Now())
	switch {
	case errors.Is(err, store.ErrInvalidSlug), errors.Is(err, store.ErrTenantGone):
		return s.refuse(id, codes.FailedPrecondition, "the tenant has no device store: %s", err.Error())
	case actx.Err() != nil:
		return s.ended(actx, id)
	case err != nil:
		s.o.Log.Error(err, "applying sweep results", "caller", id.String())
		return status.Error(codes.Unavailable, "applying the sweep results failed; send them again")
	}
	s.o.Metrics.SweptHosts.WithLabelValues(SweepMatched).Add(float64(out.Matched))
	s.o.Metrics.SweptHosts.WithLabelValues(SweepUnknown).Add(float64(out.Unknown))
	s.o.Metrics.SweptHosts.WithLabelValues(SweepInvalid).Add(float64(out.Invalid))
	s.o.Log.V(1).Info("sweep applied", "caller", id.String(), "matched", out.Matched, "unknown", out.Unknown, "invalid", out.Invalid)
	return nil
}
