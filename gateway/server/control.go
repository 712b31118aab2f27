package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	pb "github.com/serviceradar/sync-operator/proto"
)

// WatchCluster keeps the configuration catalog current (and so wakes the
// ControlStreams whose configuration may have changed) through the
// informers of c, the cache given as Options.Reader.
func (s *Server) WatchCluster(ctx context.Context, c ctrlcache.Cache) error {
	if err := s.catalog.Watch(ctx, c); err != nil {
		return status.Errorf(codes.Internal, "watching the cluster: %v", err)
	}
	if err := s.watchRenewals(ctx, c); err != nil {
		return status.Errorf(codes.Internal, "watching the cluster: %v", err)
	}
	return nil
}

// ControlStream pushes the caller's config (a sync worker's bundle, or an
// agent's configuration) whenever it changes, after an initial one; the
// caller acknowledges each with a ConfigAck. It also
// carries the commands of SendCommand and the worker's CommandAck,
// CommandProgress and CommandResult answers, and an edge worker's
// certificate requests (recorded for the manager, which signs) and their
// answers (see recordRenewal). GetConfig
// polling stays the fallback. The stream ends Unauthenticated when the
// caller's certificate chain expires (the worker reconnects with its
// renewed one), and each caller may hold Admission.ControlStreamsPerCaller.
func (s *Server) ControlStream(stream pb.AgentGatewayService_ControlStreamServer) error {
	ctx := stream.Context()
	select {
	case <-s.draining:
		return status.Error(codes.Unavailable, "gateway shutting down")
	default:
	}
	peer, err := s.peer(ctx)
	if err != nil {
		return s.unauthenticated(err)
	}
	release, limit := s.controlStreams.take(peer.String())
	if limit != "" {
		return s.throttle(peer, limit, "too many open ControlStreams")
	}
	defer release()
	notAfter, err := mtls.PeerNotAfter(ctx)
	if err != nil {
		return s.unauthenticated(err)
	}
	expiry := s.o.Clock.NewTimer(notAfter.Sub(s.o.Clock.Now()))
	defer expiry.Stop()
	first, err := stream.Recv()
	if err != nil {
		return status.Error(codes.InvalidArgument, "the stream must start with a hello")
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the stream must start with a hello")
	}
	slug := peer.TenantSlug
	// Register for the next change before reading, so none is missed.
	wake := s.catalog.Changed(slug)
	load := s.controlConfig(ctx, peer, hello.GetAgentId())
	id, cfg, err := load(ctx)
	if err != nil {
		return err
	}
	s.o.Metrics.ControlStreams.Inc()
	defer s.o.Metrics.ControlStreams.Dec()
	// Commands for this caller (SendCommand) go out on this stream, and
	// its answers come back on it.
	conn, closeConn := s.commands.open(peer.String())
	defer closeConn()
	acks := make(chan *pb.ConfigAck, 4)
	// One certificate request at a time: more while one is being recorded are dropped.
	csrs := make(chan *pb.CertificateSigningRequest, 1)
	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if ack := msg.GetConfigAck(); ack != nil {
				select {
				case acks <- ack:
				default:
				}
				continue
			}
			if csr := msg.GetCertificateRequest(); csr != nil {
				select {
				case csrs <- csr:
				default:
					s.o.Log.Info("dropped a certificate request sent while another was being recorded", "caller", peer.String())
				}
				continue
			}
			if !conn.deliver(msg) {
				s.o.Log.V(1).Info("dropped a control stream message that answers no pending command", "caller", peer.String())
			}
		}
	}()
	sent := hello.GetConfigVersion()
	// renewing is the certificate request waiting for the manager's answer.
	var renewing *pendingRenewal
	var renewed <-chan struct{}
	for {
		if cfg.GetConfigVersion() != sent {
			resp := &pb.ControlStreamResponse{Payload: &pb.ControlStreamResponse_Config{Config: cfg}}
			if err := stream.Send(resp); err != nil {
				return err //nolint:wrapcheck // the stream's own status
			}
			sent = cfg.GetConfigVersion()
			s.o.Metrics.ConfigPushes.Inc()
			s.o.Log.V(1).Info("pushed config", "caller", id.String(), "version", sent)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.draining:
			// This replica is going away: end the stream now so that the
			// worker reconnects to another one instead of waiting.
			return status.Error(codes.Unavailable, "gateway shutting down")
		case err := <-recvErr:
			// The worker closed its side (io.EOF) or the connection broke: either
			// way the stream is over, and the worker reconnects when it can.
			s.o.Log.V(1).Info("control stream ended", "caller", id.String(), "reason", Clip(err.Error()))
			return nil
		case cmd := <-conn.out:
			if err := stream.Send(cmd); err != nil {
				return err //nolint:wrapcheck // the stream's own status
			}
			continue // a command changes no configuration
		case csr := <-csrs:
			p, refused := s.recordRenewal(ctx, csr)
			if refused != nil {
				if err := stream.Send(refused); err != nil {
					return err //nolint:wrapcheck // the stream's own status
				}
				continue
			}
			renewing, renewed = p, s.renewals.changed(p.uid)
			if err := s.sendRenewal(ctx, stream, &renewing, &renewed); err != nil {
				return err
			}
			continue
		case <-renewed:
			renewed = s.renewals.changed(renewing.uid)
			if err := s.sendRenewal(ctx, stream, &renewing, &renewed); err != nil {
				return err
			}
			continue
		case <-expiry.C():
			return s.refuse(id, codes.Unauthenticated, "the client certificate expired at %s; reconnect with a renewed one",
				notAfter.UTC().Format(time.RFC3339))
		case ack := <-acks:
			result := AckStale
			if ack.GetConfigVersion() == sent {
				result = AckCurrent
			}
			s.o.Metrics.ConfigAcks.WithLabelValues(result).Inc()
			s.o.Log.V(1).Info("config acknowledged", "caller", id.String(), "version", Clip(ack.GetConfigVersion()), "result", result)
			continue // nothing changed: no need to read the configuration again
		case <-wake:
		}
		wake = s.catalog.Changed(slug)
		if id, cfg, err = load(ctx); err != nil {
			return err
		}
	}
}

// sendRenewal sends the answer to the waiting certificate request once the
// manager gave it, and stops waiting.
func (s *Server) sendRenewal(ctx context.Context, stream pb.AgentGatewayService_ControlStreamServer, p **pendingRenewal, wake *<-chan struct{}) error {
	ans := s.renewalAnswer(ctx, *p)
	if ans == nil {
		return nil
	}
	*p, *wake = nil, nil
	return stream.Send(ans) //nolint:wrapcheck // the stream's own status
}

// controlConfig returns how a ControlStream reads its caller's current
// configuration: an agent's (ServiceRadar's agents hold a ControlStream
// too, and retry a refused one every 5 s forever), or a sync worker's
// bundle. Either refuses a caller that may not have it.
func (s *Server) controlConfig(ctx context.Context, peer identity.Identity, agentID string) func(context.Context) (identity.Identity, *pb.AgentConfigResponse, error) {
	if s.isAgentCaller(ctx, peer) {
		return func(ctx context.Context) (identity.Identity, *pb.AgentConfigResponse, error) {
			cfg, _, err := s.agentConfig(ctx, peer, agentID)
			return peer, cfg, err
		}
	}
	return func(ctx context.Context) (identity.Identity, *pb.AgentConfigResponse, error) {
		id, e, err := s.syncConfig(ctx, agentID)
		if err != nil {
			return id, nil, err
		}
		return id, s.configResponse(e), nil
	}
}

// Drain ends every open ControlStream (and refuses new ones) so that workers
// move to other replicas before this one stops.
func (s *Server) Drain() {
	s.drainOnce.Do(func() { close(s.draining) })
}
