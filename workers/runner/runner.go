// Package runner runs a worker's sync loops: one per source of its bundle,
// each on its poll interval with jitter, never two runs of one source at
// once, a run id and a timeout per run. A new bundle starts, restarts and
// stops loops without restarting the worker. A run streams the source's
// pages through the network blacklist into StreamStatus segments and ends
// with run_complete, full_fetch only when every page was fetched.
//
// A full pass runs first and then once per discovery interval; the polls in
// between fetch only what changed since the last good pass when the client
// can (integration.Incremental), and are never full fetches, so only full
// passes retract. A run that times out still ends with run_complete and
// its error, so the IntegrationSource shows it.
//
// RunNow asks for a run of a source at once ("sync now"), full or
// incremental: it starts now, or right after the run in progress; requests
// made while one waits join it, and each request time runs once.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/wire/bundle"
	"github.com/serviceradar/sync-operator/wire/results"
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
	// firstRunSpread bounds the random delay of the first runs of the
	// worker's first bundle, so the sources of a worker that starts do not
	// all hit their APIs at once; sources added or changed later run at once.
	firstRunSpread = 5 * time.Second
	// changedOverlap reaches back before the last good pass when asking for
	// changes, for clock skew between the worker and the inventory (devices
	// sent twice are harmless: the gateway writes only what changed).
	changedOverlap = time.Minute
	// finalTimeout bounds the final segment of a run that timed out.
	finalTimeout = time.Minute
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
	o       Options
	mu      sync.Mutex
	loops   map[string]*loop
	wg      sync.WaitGroup
	applied bool // a bundle was applied before
	// unrunnable holds the configuration of each source its client refused,
	// so one is reported once, not again with every new bundle.
	unrunnable map[string]string
}

type loop struct {
	src    bundle.Source
	raw    string
	cancel context.CancelFunc
	done   chan struct{}
	client integration.Client
	// first is the wait before the loop's first run.
	first time.Duration
	// lastFull and lastGood are when the last successful full pass and the
	// last successful pass of either kind started (zero: none yet). Only the
	// loop's goroutine uses them.
	lastFull, lastGood time.Time

	// now holds a token while a RunNow request waits (capacity one, sent
	// and drained under mu, so a token is there exactly while pending is).
	now chan struct{}
	mu  sync.Mutex
	// pending is the mode the waiting request asked for (none: nothing
	// waits); running is set while a run is under way; requested is the
	// newest request time accepted.
	pending   Mode
	running   bool
	requested time.Time
}

// Mode is how a run fetches.
type Mode int

// Modes of a run asked for with RunNow.
const (
	// ModeScheduled is no request: the loop's own choice (a full pass once
	// per discovery interval, changes in between).
	ModeScheduled Mode = iota
	// ModeIncremental fetches the changes since the last good pass (in
	// full when the source cannot, or has had no full pass yet).
	ModeIncremental
	// ModeFull fetches the whole inventory.
	ModeFull
)

func (m Mode) String() string {
	switch m {
	case ModeFull:
		return "full"
	case ModeIncremental:
		return "incremental"
	}
	return "scheduled"
}

// ErrNotRun is returned by RunNow for a source this worker does not run:
// not in its bundle, paused, or refused as not runnable.
var ErrNotRun = errors.New("this worker does not run the source")

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
	return &Runner{o: o, loops: map[string]*loop{}, unrunnable: map[string]string{}}
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
	defer func() { r.applied = true }()
	for key, l := range r.loops {
		src, ok := b.Sources[key]
		raw, _ := json.Marshal(src)
		if !ok || src.Paused || string(raw) != l.raw {
			l.cancel()
			<-l.done
			delete(r.loops, key)
			r.o.Metrics.active.Dec()
			// A changed source may have changed type: its series start over.
			r.o.Metrics.forget(key)
			r.o.Log.Info("sync loop stopped", "source", key, "reason", map[bool]string{true: "changed", false: "removed or paused"}[ok && !src.Paused])
		}
	}
	for key := range r.unrunnable {
		if src, ok := b.Sources[key]; !ok || src.Paused {
			delete(r.unrunnable, key)
			r.o.Metrics.forget(key)
		}
	}
	for key, src := range b.Sources {
		if _, running := r.loops[key]; running || src.Paused {
			continue
		}
		raw, _ := json.Marshal(src)
		if r.unrunnable[key] == string(raw) {
			continue // reported already; nothing changed
		}
		delete(r.unrunnable, key)
		cfg := integration.Config{Source: src, Observer: observer{m: r.o.Metrics, key: key, kind: src.Type}}
		client, err := r.o.NewClient(cfg, r.o.HTTP)
		if err != nil {
			r.o.Log.Error(err, "source not runnable", "source", key)
			r.o.Metrics.errors.WithLabelValues(key, src.Type, "config").Inc()
			r.unrunnable[key] = string(raw)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.reportUnrunnable(ctx, key, src, err)
			}()
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &loop{src: src, raw: string(raw), cancel: cancel, done: make(chan struct{}), client: client, now: make(chan struct{}, 1)}
		if !r.applied {
			l.first = time.Duration(rand.Int64N(int64(min(interval(src)/10, firstRunSpread)) + 1)) //nolint:gosec // jitter
		}
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

// reportUnrunnable ends a run of a source the worker cannot run (its
// client refused the configuration) at once with the reason, so the
// IntegrationSource shows it rather than only the worker's log.
func (r *Runner) reportUnrunnable(ctx context.Context, key string, src bundle.Source, cause error) {
	ctx, cancel := context.WithTimeout(ctx, finalTimeout)
	defer cancel()
	s := r.sender(src, uuid.NewString())
	if err := s.Fail(ctx, "source not runnable: "+cause.Error()); err != nil {
		r.o.Log.Error(err, "reporting an unrunnable source failed", "source", key)
	}
}

// sender is the chunk sender of one run of a source.
func (r *Runner) sender(src bundle.Source, runID string) *chunk.Sender {
	return &chunk.Sender{Client: r.o.Gateway, AgentID: r.o.AgentID, SegmentDevices: r.o.SegmentDevices, ChunkBytes: r.o.ChunkBytes,
		Meta: results.Meta{SyncServiceID: src.SyncServiceID, IntegrationSourceUID: src.IntegrationSourceUID, SyncRunID: runID}}
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

// run is one source's loop: a first run (after a short random delay at the
// worker's start), then one per interval, and one at once for a RunNow
// request (the interval then counts from its end).
func (r *Runner) run(ctx context.Context, key string, l *loop) {
	wait := l.first
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-l.now:
			t.Stop()
		}
		r.once(ctx, key, l, l.start())
		l.mu.Lock()
		l.running = false
		l.mu.Unlock()
		wait = interval(l.src)
	}
}

// start marks a run under way and takes the mode a waiting request asked
// for (ModeScheduled when none waits): a scheduled run that starts while a
// request waits serves it.
func (l *loop) start() Mode {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.pending
	l.pending, l.running = ModeScheduled, true
	select {
	case <-l.now:
	default:
	}
	return m
}

// RunNow asks for a run of the source whose IntegrationSource UID is uid,
// in mode (ModeFull or ModeIncremental), for the request made at
// requestedAt: at once, or right after the run in progress. A request while
// another waits joins it (one run, full when either asked for full); a
// request whose time is not after one accepted before runs nothing more.
// The answer says which, for people; ErrNotRun when the worker does not run
// the source.
func (r *Runner) RunNow(uid string, mode Mode, requestedAt time.Time) (string, error) {
	if mode != ModeFull && mode != ModeIncremental {
		return "", fmt.Errorf("run-now mode %d: must be full or incremental", mode)
	}
	r.mu.Lock()
	var key string
	var l *loop
	for k, x := range r.loops {
		if x.src.IntegrationSourceUID == uid {
			key, l = k, x
			break
		}
	}
	r.mu.Unlock()
	if l == nil {
		return "", fmt.Errorf("source %s: %w (not in its configuration, paused, or not runnable)", uid, ErrNotRun)
	}
	note := ""
	if _, ok := l.client.(integration.Incremental); mode == ModeIncremental && !ok {
		note = " (this source cannot fetch only changes: it is read in full)"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !requestedAt.IsZero() && !requestedAt.After(l.requested) {
		return fmt.Sprintf("the request of %s for %s was accepted before: nothing more to run", requestedAt.UTC().Format(time.RFC3339), key), nil
	}
	if requestedAt.After(l.requested) {
		l.requested = requestedAt
	}
	joined := l.pending != ModeScheduled
	l.pending = max(l.pending, mode)
	select {
	case l.now <- struct{}{}:
	default:
	}
	r.o.Log.Info("sync run requested", "source", key, "mode", mode.String(), "requestedAt", requestedAt.UTC().Format(time.RFC3339),
		"joined", joined, "running", l.running)
	switch {
	case joined:
		return fmt.Sprintf("joined the request already waiting: %s run of %s starts %s%s", article(l.pending), key,
			map[bool]string{true: "after the run in progress", false: "now"}[l.running], note), nil
	case l.running:
		return fmt.Sprintf("a run of %s is in progress: %s run starts right after it%s", key, article(mode), note), nil
	}
	return fmt.Sprintf("%s run of %s starts now%s", article(mode), key, note), nil
}

// article is the mode with its indefinite article.
func article(m Mode) string {
	if m == ModeIncremental {
		return "an incremental"
	}
	return "a " + m.String()
}

// discovery is a source's discovery interval: how often a full pass runs
// (zero: every pass is full).
func discovery(src bundle.Source) time.Duration {
	return time.Duration(max(src.DiscoveryIntervalSec, 0)) * time.Second
}

// pass is how a run fetches: a full pass, or the changes since an instant.
// A requested mode wins over the discovery interval, but only a source that
// can fetch changes, and has had a full pass, fetches changes.
func (l *loop) pass(now time.Time, want Mode) (full bool, since time.Time) {
	if _, ok := l.client.(integration.Incremental); !ok || l.lastFull.IsZero() || want == ModeFull ||
		(want == ModeScheduled && now.Sub(l.lastFull) >= discovery(l.src)) {
		return true, time.Time{}
	}
	return false, l.lastGood.Add(-changedOverlap)
}

// once is one run of a source, in the mode a request asked for
// (ModeScheduled: the loop's own choice).
func (r *Runner) once(parent context.Context, key string, l *loop, want Mode) {
	ctx, cancel := context.WithTimeout(parent, r.o.RunTimeout)
	defer cancel()
	runID := uuid.NewString()
	begin := time.Now()
	full, since := l.pass(begin, want)
	dry := l.src.DryRun
	if dry {
		// A dry run predicts a full run, retractions included.
		full, since = true, time.Time{}
	}
	mode := map[bool]string{true: "full", false: "changed"}[full]
	log := r.o.Log.WithValues("source", key, "run", runID, "mode", mode, "requested", want != ModeScheduled, "dryRun", dry)
	blacklist := prefixes(l.src.NetworkBlacklist, log)
	s := r.sender(l.src, runID)
	s.Meta.Mode = map[bool]string{true: results.ModeFull, false: results.ModeIncremental}[full]
	s.Meta.DryRun = dry
	sendErr := error(nil)
	emit := func(ctx context.Context, page []results.DeviceUpdate) error {
		for _, d := range page {
			if !allow(&d, blacklist) {
				continue
			}
			d.Partition = l.src.Partition
			if err := s.Add(ctx, d); err != nil {
				sendErr = err
				return err
			}
		}
		return nil
	}
	var fetchErr error
	if full {
		fetchErr = l.client.Fetch(ctx, emit)
	} else {
		fetchErr = l.client.(integration.Incremental).FetchChanged(ctx, since, emit)
	}
	m := r.o.Metrics
	result := "success"
	switch {
	case parent.Err() != nil:
		// A shutdown or a config change: the run ends without run_complete,
		// so nothing is retracted.
		s.Abandon()
		result = "aborted"
	case ctx.Err() != nil:
		// Timed out: what was sent stays, and the run ends with its error
		// (never a full fetch) so the IntegrationSource reports it.
		result, fetchErr = "timeout", fmt.Errorf("the run timed out after %v", r.o.RunTimeout)
		m.errors.WithLabelValues(key, l.src.Type, "timeout").Inc()
		fctx, fcancel := context.WithTimeout(parent, finalTimeout)
		if err := s.Fail(fctx, fetchErr.Error()); err != nil {
			log.Error(err, "reporting the timed-out run failed")
			m.errors.WithLabelValues(key, l.src.Type, "send").Inc()
		}
		fcancel()
	case sendErr != nil:
		s.Abandon()
		result = "aborted"
		log.Error(sendErr, "sending devices failed; the run is abandoned")
		m.errors.WithLabelValues(key, l.src.Type, "send").Inc()
	default:
		errText := ""
		if fetchErr != nil {
			result, errText = "partial", fetchErr.Error()
			m.errors.WithLabelValues(key, l.src.Type, "run").Inc()
		}
		if err := s.Finish(ctx, full && fetchErr == nil, errText); err != nil {
			result = "aborted"
			log.Error(err, "finishing the run failed")
			m.errors.WithLabelValues(key, l.src.Type, "send").Inc()
		} else if fetchErr == nil && !dry {
			// A dry run stored nothing: the changes it saw are still to send.
			l.lastGood = begin
			if full {
				l.lastFull = begin
			}
			m.lastSuccess.WithLabelValues(key, l.src.Type).SetToCurrentTime()
		}
	}
	m.devices.WithLabelValues(key, l.src.Type).Add(float64(s.Sent()))
	m.lastRunDevices.WithLabelValues(key, l.src.Type).Set(float64(s.Sent()))
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

// allow applies the network blacklist to a device: one whose primary IP is
// blacklisted is dropped, and blacklisted addresses leave its all_ips.
func allow(d *results.DeviceUpdate, list []netip.Prefix) bool {
	if len(list) == 0 {
		return true
	}
	if blocked(d.IP, list) {
		return false
	}
	all, ok := d.Metadata[integration.MetaAllIPs]
	if !ok || all == "" {
		return true
	}
	kept := make([]string, 0, 4)
	changed := false
	for ip := range strings.SplitSeq(all, ",") {
		if ip = strings.TrimSpace(ip); blocked(ip, list) {
			changed = true
			continue
		}
		kept = append(kept, ip)
	}
	if changed {
		d.Metadata = maps.Clone(d.Metadata)
		d.Metadata[integration.MetaAllIPs] = strings.Join(kept, ",")
		if len(kept) == 0 {
			delete(d.Metadata, integration.MetaAllIPs)
		}
	}
	return true
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
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}
