package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/gateway/catalog"
	"github.com/serviceradar/sync-operator/gateway/store"
	"github.com/serviceradar/sync-operator/gateway/sweep"
	"github.com/serviceradar/sync-operator/identity"
	pb "github.com/serviceradar/sync-operator/proto"
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
	raw, _, err := bundle.Encode(bundle.Agent{AgentID: id.ComponentID, Scope: bundle.ScopeAgent, TenantID: tenantID, TenantSlug: id.TenantSlug, Partition: id.Partition})
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
