// Package diag serves the diagnostic HTTP endpoints of the gateway and the
// worker (Prometheus metrics, health, pprof) on their own listeners.
package diag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/go-logr/logr"
)

// Server is a running diagnostic endpoint.
type Server struct {
	srv *http.Server
}

// Serve binds addr before returning (so a taken port fails the caller at
// once, not a goroutine later) and serves h on it until Stop.
func Serve(addr string, h http.Handler, log logr.Logger) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "diagnostic server stopped", "address", addr)
		}
	}()
	return s, nil
}

// Stop shuts the server down, waiting a few seconds for open requests. A
// nil Server is a no-op.
func (s *Server) Stop() {
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// Pprof is a handler of the net/http/pprof endpoints under /debug/pprof/.
func Pprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
