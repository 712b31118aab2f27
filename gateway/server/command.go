package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/identity"
	pb "github.com/serviceradar/sync-operator/proto"
)

// Command errors.
var (
	// ErrNotConnected means the worker has no ControlStream open on this
	// gateway replica.
	ErrNotConnected = errors.New("the worker has no control stream open on this gateway replica")
	// ErrStreamEnded means the worker's ControlStream ended before it
	// answered the command with a result.
	ErrStreamEnded = errors.New("the control stream ended before the command's result")
)

// Command is an action for a connected worker, sent on its ControlStream as
// a CommandRequest.
type Command struct {
	// Type names the action, "<component>.<verb>" (for example "sync.run_now").
	Type string
	// Payload is the action's JSON arguments, if any.
	Payload []byte
	// TTL is how long the command stays valid after it is sent; zero is no limit.
	TTL time.Duration
}

// CommandOutcome is what a worker answered to a command.
type CommandOutcome struct {
	// ID is the command's id.
	ID string
	// Ack is the worker's acknowledgement; nil when it sent its result
	// without one.
	Ack *pb.CommandAck
	// Progress are the progress reports received before the result, oldest
	// first (at most maxProgress of them are kept).
	Progress []*pb.CommandProgress
	// Result is the outcome: Success, a message and an optional payload.
	Result *pb.CommandResult
}

// maxProgress bounds the progress reports kept per command.
const maxProgress = 64

// pendingCommand collects the answers to one command.
type pendingCommand struct {
	mu       sync.Mutex
	outcome  CommandOutcome
	finished chan struct{} // closed with the result
}

// controlConn is one open ControlStream that commands can be sent on.
type controlConn struct {
	out   chan *pb.ControlStreamResponse // drained by the stream's loop, its only sender
	ended chan struct{}                  // closed when the stream ends

	mu      sync.Mutex
	pending map[string]*pendingCommand
}

// deliver hands a worker's command answer to the command it names. Only
// commands sent on this stream can be answered on it: an id of another
// stream's command, or a made-up one, is dropped.
func (c *controlConn) deliver(msg *pb.ControlStreamRequest) bool {
	var id string
	switch {
	case msg.GetCommandAck() != nil:
		id = msg.GetCommandAck().GetCommandId()
	case msg.GetCommandProgress() != nil:
		id = msg.GetCommandProgress().GetCommandId()
	case msg.GetCommandResult() != nil:
		id = msg.GetCommandResult().GetCommandId()
	default:
		return false
	}
	c.mu.Lock()
	p := c.pending[id]
	if msg.GetCommandResult() != nil {
		delete(c.pending, id)
	}
	c.mu.Unlock()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case msg.GetCommandAck() != nil:
		if p.outcome.Ack == nil {
			p.outcome.Ack = msg.GetCommandAck()
		}
	case msg.GetCommandProgress() != nil:
		if len(p.outcome.Progress) < maxProgress {
			p.outcome.Progress = append(p.outcome.Progress, msg.GetCommandProgress())
		}
	default:
		p.outcome.Result = msg.GetCommandResult()
		close(p.finished)
	}
	return true
}

// commandRouter knows the ControlStreams open on this replica, by the
// identity of their caller's certificate.
type commandRouter struct {
	mu    sync.Mutex
	conns map[string][]*controlConn
}

// open registers a stream of the caller; the returned func unregisters it.
func (r *commandRouter) open(caller string) (*controlConn, func()) {
	c := &controlConn{out: make(chan *pb.ControlStreamResponse), ended: make(chan struct{}), pending: map[string]*pendingCommand{}}
	r.mu.Lock()
	if r.conns == nil {
		r.conns = map[string][]*controlConn{}
	}
	r.conns[caller] = append(r.conns[caller], c)
	r.mu.Unlock()
	return c, func() {
		r.mu.Lock()
		list := r.conns[caller]
		for i, x := range list {
			if x == c {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(r.conns, caller)
		} else {
			r.conns[caller] = list
		}
		r.mu.Unlock()
		close(c.ended)
	}
}

// newest is the caller's most recently opened stream: a worker that
// reconnected may briefly hold two, and the older one is on its way out.
func (r *commandRouter) newest(caller string) *controlConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.conns[caller]
	if len(list) == 0 {
		return nil
	}
	return list[len(list)-1]
}

// Connected reports whether the worker whose certificate identity is
// worker has a ControlStream open on this replica, so that SendCommand can
// reach it.
func (s *Server) Connected(worker identity.Identity) bool {
	return s.commands.newest(worker.String()) != nil
}

// SendCommand sends a command to the worker whose certificate identity is
// worker, on its ControlStream open on this replica, and waits until the
// worker answers it with a CommandResult, its stream ends (ErrStreamEnded)
// or ctx ends. A worker that does not know the command's type answers it
// with success false; the outcome carries what it said.
func (s *Server) SendCommand(ctx context.Context, worker identity.Identity, cmd Command) (CommandOutcome, error) {
	c := s.commands.newest(worker.String())
	if c == nil {
		return CommandOutcome{}, fmt.Errorf("command %s for %s: %w", cmd.Type, worker, ErrNotConnected)
	}
	id := uuid.NewString()
	p := &pendingCommand{outcome: CommandOutcome{ID: id}, finished: make(chan struct{})}
	c.mu.Lock()
	c.pending[id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	req := &pb.CommandRequest{CommandId: id, CommandType: cmd.Type, PayloadJson: cmd.Payload,
		TtlSeconds: int64(cmd.TTL.Seconds()), CreatedAt: s.o.Clock.Now().Unix()}
	select {
	case c.out <- &pb.ControlStreamResponse{Payload: &pb.ControlStreamResponse_Command{Command: req}}:
	case <-c.ended:
		return CommandOutcome{ID: id}, fmt.Errorf("command %s %s for %s: %w", cmd.Type, id, worker, ErrStreamEnded)
	case <-ctx.Done():
		return CommandOutcome{ID: id}, fmt.Errorf("sending command %s %s to %s: %w", cmd.Type, id, worker, ctx.Err())
	}
	s.o.Log.V(1).Info("sent command", "caller", worker.String(), "command", id, "type", cmd.Type)
	select {
	case <-p.finished:
	case <-c.ended:
		return p.snapshot(), fmt.Errorf("command %s %s for %s: %w", cmd.Type, id, worker, ErrStreamEnded)
	case <-ctx.Done():
		return p.snapshot(), fmt.Errorf("waiting for the result of command %s %s of %s: %w", cmd.Type, id, worker, ctx.Err())
	}
	out := p.snapshot()
	s.o.Log.V(1).Info("command finished", "caller", worker.String(), "command", id, "success", out.Result.GetSuccess())
	return out, nil
}

// snapshot copies what was received so far.
func (p *pendingCommand) snapshot() CommandOutcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.outcome
	out.Progress = append([]*pb.CommandProgress(nil), p.outcome.Progress...)
	return out
}
