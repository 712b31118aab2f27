package server

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/tools/cache"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	corev1 "k8s.io/api/core/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/bundle"
	pb "github.com/serviceradar/sync-operator/proto"
)

// changes wakes every open ControlStream when the cluster changes; each
// stream then rebuilds its own bundle and pushes it only if its version moved.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

func (c *changes) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// Notify wakes the open ControlStreams: something a bundle is built from changed.
func (s *Server) Notify() {
	s.changes.mu.Lock()
	defer s.changes.mu.Unlock()
	if s.changes.ch != nil {
		close(s.changes.ch)
		s.changes.ch = nil
	}
}

// WatchCluster calls Notify on every change of the kinds bundles are built
// from, through the informers of c (the gateway's cache).
func (s *Server) WatchCluster(ctx context.Context, c ctrlcache.Cache) error {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.Notify() },
		UpdateFunc: func(any, any) { s.Notify() },
		DeleteFunc: func(any) { s.Notify() },
	}
	for _, obj := range []client.Object{&v1alpha1.IntegrationSource{}, &v1alpha1.SyncService{}, &v1alpha1.Tenant{}, &corev1.Namespace{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return status.Errorf(codes.Internal, "watching %T: %v", obj, err)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return status.Errorf(codes.Internal, "watching %T: %v", obj, err)
		}
	}
	return nil
}

// ControlStream pushes the caller's config whenever it changes, after an
// initial one; the worker acknowledges each with a ConfigAck. GetConfig
// polling stays the fallback.
func (s *Server) ControlStream(stream pb.AgentGatewayService_ControlStreamServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return status.Error(codes.InvalidArgument, "the stream must start with a hello")
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the stream must start with a hello")
	}
	acks := make(chan *pb.ConfigAck, 4)
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
			}
		}
	}()
	sent := hello.GetConfigVersion()
	for {
		// Register for the next change before building, so none is missed.
		wake := s.changes.wait()
		id, _, b, err := s.syncConfig(ctx, hello.GetAgentId())
		if err != nil {
			return err
		}
		raw, version, err := bundle.Encode(b)
		if err != nil {
			return status.Error(codes.Internal, "encoding configuration failed")
		}
		if version != sent {
			resp := &pb.ControlStreamResponse{Payload: &pb.ControlStreamResponse_Config{Config: &pb.AgentConfigResponse{
				ConfigVersion: version, ConfigTimestamp: s.o.Now().Unix(), ConfigJson: raw,
				HeartbeatIntervalSec: int32(s.o.Heartbeat.Seconds()), ConfigPollIntervalSec: int32(s.o.Poll.Seconds()),
			}}}
			if err := stream.Send(resp); err != nil {
				return err //nolint:wrapcheck // the stream's own status
			}
			sent = version
			s.o.Log.V(1).Info("pushed config", "caller", id.String(), "version", version)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			// The worker closed its side (io.EOF) or the connection broke: either
			// way the stream is over, and the worker reconnects when it can.
			s.o.Log.V(1).Info("control stream ended", "caller", id.String(), "reason", err.Error())
			return nil
		case ack := <-acks:
			s.o.Log.V(1).Info("config acknowledged", "caller", id.String(), "version", ack.GetConfigVersion())
		case <-wake:
		}
	}
}
