// Package runner runs a worker's sync loops: one per source of its bundle,
// each on its poll interval with jitter, never two runs of one source at
// once, a run id and a timeout per run. A new bundle starts, restarts and
// stops loops without restarting the worker. A run streams the source's
// pages through the network blacklist into StreamStatus segments and ends
// with run_complete, full_fetch only when every page was fetched.
package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/serviceradar/sync-operator/gateway/bundle"
	"github.com/serviceradar/sync-operator/gateway/results"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/workers/chunk"
	"github.com/serviceradar/sync-operator/workers/integration"
	"github.com/serviceradar/sync-operator/workers/integration/armis"
	"github.com/serviceradar/sync-operator/workers/integration/faker"
	"github.com/serviceradar/sync-operator/workers/integration/netbox"
)

// Defaults of a Runner.
const (
	DefaultInterval   = 10 * time.Minute
	DefaultRunTimeout = time.Hour
	jitter            = 0.1
)

// Options configure a Runner.
type Options struct {
	// Gateway receives the segments; AgentID is the worker's component id.
	Gateway pb.AgentGatewayServiceClient
	AgentID string
	// HTTP reaches the inventories (nil: a client with a 2-minute timeout).
	HTTP *http.Client
	// RunTimeout bounds one run (default one hour).
	RunTimeout time.Duration
	// SegmentDevices and ChunkBytes size what is sent (chunk defaults).
	SegmentDevices, ChunkBytes int
	// Metrics receive per-source figures (nil: not recorded).
	Metrics *Metrics
	Log     logr.Logger
	// NewClient builds a source's inventory client (nil: by type).
	NewClient func(integration.Config, *http.Client) (integration.Client, error)
}

// Runner is safe for concurrent use.
type Runner struct {
	o     Options
	mu    sync.Mutex
	loops map[string]*loop
	wg    sync.WaitGroup
}

type loop struct {
	src    bundle.Source
	raw    string
	cancel context.CancelFunc
	done   chan struct{}
	client integration.Client
}

// New returns a runner with no loops.
func New(o Options) *Runner {
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 2 * time.Minute}
	}
	if o.RunTimeout <= 0 {
		o.RunTimeout = DefaultRunTimeout
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.NewClient == nil {
		o.NewClient = newClient
	}
	return &Runner{o: o, loops: map[string]*loop{}}
}

// newClient builds the client of a source's type.
func newClient(cfg integration.Config, hc *http.Client) (integration.Client, error) {
	switch cfg.Source.Type {
	case armis.IntegrationType:
		return armis.New(cfg, hc) //nolint:wrapcheck // the constructors name the field
	case "netbox":
		return netbox.New(cfg, hc) //nolint:wrapcheck // the constructors name the field
	case faker.IntegrationType:
		return faker.New(cfg) //nolint:wrapcheck // the constructors name the field
	}
	return nil, fmt.Errorf("type %q is not an integration this worker runs", cfg.Source.Type)
}

// Apply makes the loops match a bundle: new sources start, changed ones
// restart (a run in flight is cancelled and commits nothing it had not
// sent), paused and removed ones stop.
func (r *Runner) Apply(ctx context.Context, b bundle.Sync) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, l := range r.loops {
		src, ok := b.Sources[key]
		raw, _ := json.Marshal(src)
		if !ok || src.Paused || string(raw) != l.raw {
			l.cancel()
			<-l.done
			delete(r.loops, key)
			r.o.Metrics.active.Dec()
			r.o.Log.Info("sync loop stopped", "source", key, "reason", map[bool]string{true: "changed", false: "removed or paused"}[ok && !src.Paused])
		}
	}
	for key, src := range b.Sources {
		if _, running := r.loops[key]; running || src.Paused {
			continue
		}
		raw, _ := json.Marshal(src)
		cfg := integration.Config{Source: src, Observer: observer{m: r.o.Metrics, key: key, kind: src.Type}}
		client, err := r.o.NewClient(cfg, r.o.HTTP)
		if err != nil {
			r.o.Log.Error(err, "source not runnable", "source", key)
			r.o.Metrics.errors.WithLabelValues(key, src.Type, "config").Inc()
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &loop{src: src, raw: string(raw), cancel: cancel, done: make(chan struct{}), client: client}
		r.loops[key] = l
		r.o.Metrics.active.Inc()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(l.done)
			r.run(lctx, key, l)
		}()
		r.o.Log.Info("sync loop started", "source", key, "type", src.Type)
	}
}

// Stop cancels every loop and waits for them.
func (r *Runner) Stop() {
	r.mu.Lock()
	for _, l := range r.loops {
		l.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// interval is a source's poll interval with ±10% jitter.
func interval(src bundle.Source) time.Duration {
	d := time.Duration(src.PollIntervalSec) * time.Second
	if d <= 0 {
		d = DefaultInterval
	}
	return time.Duration(float64(d) * (1 - jitter + 2*jitter*rand.Float64())) //nolint:gosec // jitter
}

// run is one source's loop: a run at once, then one per interval.
func (r *Runner) run(ctx context.Context, key string, l *loop) {
	for {
		r.once(ctx, key, l)
		t := time.NewTimer(interval(l.src))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// once is one run of a source.
func (r *Runner) once(ctx context.Context, key string, l *loop) {
	ctx, cancel := context.WithTimeout(ctx, r.o.RunTimeout)
	defer cancel()
	runID := uuid.NewString()
	log := r.o.Log.WithValues("source", key, "run", runID)
	begin := time.Now()
	blacklist := prefixes(l.src.NetworkBlacklist, log)
	s := &chunk.Sender{Client: r.o.Gateway, AgentID: r.o.AgentID, SegmentDevices: r.o.SegmentDevices, ChunkBytes: r.o.ChunkBytes,
		Meta: results.Meta{SyncServiceID: l.src.SyncServiceID, IntegrationSourceUID: l.src.IntegrationSourceUID, SyncRunID: runID}}
	sendErr := error(nil)
	fetchErr := l.client.Fetch(ctx, func(ctx context.Context, page []results.DeviceUpdate) error {
		for _, d := range page {
			if blocked(d.IP, blacklist) {
				continue
			}
			d.Partition = l.src.Partition
			if err := s.Add(ctx, d); err != nil {
				sendErr = err
				return err
			}
		}
		return nil
	})
	m := r.o.Metrics
	result := "success"
	switch {
	case sendErr != nil || ctx.Err() != nil:
		s.Abandon()
		// Nothing more reaches the gateway: the run ends without run_complete,
		// so nothing is retracted. A cancelled run is a shutdown or a config change.
		result = "aborted"
		if ctx.Err() == nil {
			log.Error(sendErr, "sending devices failed; the run is abandoned")
			m.errors.WithLabelValues(key, l.src.Type, "send").Inc()
		}
	default:
		errText := ""
		if fetchErr != nil {
			result, errText = "partial", fetchErr.Error()
			m.errors.WithLabelValues(key, l.src.Type, "run").Inc()
		}
		if err := s.Finish(ctx, fetchErr == nil, errText); err != nil {
			result = "aborted"
			log.Error(err, "finishing the run failed")
			m.errors.WithLabelValues(key, l.src.Type, "send").Inc()
		} else if fetchErr == nil {
			m.lastSuccess.WithLabelValues(key, l.src.Type).SetToCurrentTime()
		}
	}
	m.devices.WithLabelValues(key, l.src.Type).Add(float64(s.Sent()))
	m.runs.WithLabelValues(key, l.src.Type, result).Observe(time.Since(begin).Seconds())
	log.Info("sync run finished", "result", result, "devices", s.Sent(), "took", time.Since(begin).Round(time.Millisecond).String(),
		"error", fmt.Sprint(fetchErr))
}

// prefixes parses a blacklist; a bad entry is logged and skipped.
func prefixes(cidrs []string, log logr.Logger) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			log.Info("ignoring a network blacklist entry that is not a CIDR", "entry", c)
			continue
		}
		out = append(out, p.Masked())
	}
	return out
}

func blocked(ip string, list []netip.Prefix) bool {
	if ip == "" || len(list) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
