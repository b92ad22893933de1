package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// Defaults for Config.
const (
	DefaultSessionTTL = 5 * time.Second
	DefaultRetention  = 7 * 24 * time.Hour
)

// Config configures a Scheduler. Zero fields take the defaults noted.
type Config struct {
	// ID names this scheduler in logs and in `patrol leader`. Required.
	ID string
	// SessionTTL is the election session's lease TTL. A dead leader is
	// replaced within about this long. Default 5s; etcd's minimum is 2s.
	SessionTTL time.Duration
	// SweepInterval is how often claimed groups are swept for lost claims
	// and overdue attempts. Default 5s.
	SweepInterval time.Duration
	// RevokeGrace is how long past its timeout an attempt may run before
	// the scheduler revokes its claim. Default 5s.
	RevokeGrace time.Duration
	// Retention is how long a finished batch stays in etcd. Default 7 days.
	Retention time.Duration
	// Log receives the scheduler's log lines.
	Log zerolog.Logger
	// OnLeading, if set, is called with the fence each time this scheduler
	// starts leading (for tests and status).
	OnLeading func(queue.Fence)
	// Metrics receives the scheduler's metrics. Default: unregistered ones.
	Metrics *metrics.Scheduler
}

// Scheduler is one candidate for leadership.
type Scheduler struct {
	q   *queue.Queue
	cfg Config
	log zerolog.Logger
	m   *metrics.Scheduler

	live      atomic.Bool   // an election session is open
	started   chan struct{} // closed once the first session is open
	startOnce sync.Once
}

// New validates cfg and returns a Scheduler.
func New(q *queue.Queue, cfg Config) (*Scheduler, error) {
	if cfg.ID == "" {
		return nil, errors.New("scheduler: ID is required")
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.SessionTTL < 2*time.Second {
		return nil, fmt.Errorf("scheduler: session TTL %s is below etcd's 2s minimum", cfg.SessionTTL)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	if cfg.RevokeGrace == 0 {
		cfg.RevokeGrace = 5 * time.Second
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewScheduler(nil)
	}
	return &Scheduler{q: q, cfg: cfg, log: cfg.Log.With().Str("scheduler_id", cfg.ID).Logger(), m: cfg.Metrics,
		started: make(chan struct{})}, nil
}

// Ready returns nil while the scheduler holds a live election session,
// leading or standing by, and says why not otherwise: it is what /readyz
// reports.
func (s *Scheduler) Ready() error {
	if !s.live.Load() {
		return errors.New("scheduler has no live election session: it is starting, or lost its lease and is opening a new one")
	}
	return nil
}

// Started is closed once the scheduler has opened its first election
// session: it is campaigning, and will lead or stand by.
func (s *Scheduler) Started() <-chan struct{} { return s.started }

// Run campaigns and leads until ctx ends, campaigning again whenever
// leadership is lost. It returns nil when ctx is cancelled.
func (s *Scheduler) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := s.term(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("leadership term ended")
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
	}
	return nil
}

// term is one session: campaign, lead until the session or a fence is lost.
func (s *Scheduler) term(ctx context.Context) error {
	sess, err := concurrency.NewSession(s.q.Client(),
		concurrency.WithTTL(int(s.cfg.SessionTTL.Seconds())), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("open election session: %w", err)
	}
	s.live.Store(true)
	s.startOnce.Do(func() { close(s.started) })
	defer func() {
		s.live.Store(false)
		// Revoke the lease so a successor need not wait out the TTL.
		// Revoke the lease, unless it expired on its own (the session ended
		// while ctx was still alive): then there is nothing to revoke.
		expired := false
		select {
		case <-sess.Done():
			expired = ctx.Err() == nil
		default:
		}
		if !expired {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			s.q.Client().Revoke(cctx, sess.Lease())
		}
		sess.Orphan()
	}()

	// Campaign can hang or return after the session expired: run it in a
	// context that ends with the session.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kept := make(chan struct{})
	go func() { defer close(kept); s.q.KeepLease(cctx, sess.Lease(), s.cfg.SessionTTL) }()
	defer func() { cancel(); <-kept }()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-cctx.Done():
		}
	}()

	el := concurrency.NewElection(sess, s.q.Keys().Election())
	start := time.Now()
	info, _ := json.Marshal(queue.LeaderInfo{ID: s.cfg.ID, Since: start.UTC()})
	s.log.Debug().Msg("campaigning")
	if err := el.Campaign(cctx, string(info)); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("campaign: %w", err)
	}
	select {
	case <-sess.Done():
		return errors.New("session expired while campaigning")
	default:
	}
	fence := queue.Fence{Key: el.Key(), Rev: el.Rev()}
	// Record when leadership began, fenced like every leader write.
	info, _ = json.Marshal(queue.LeaderInfo{ID: s.cfg.ID, Since: time.Now().UTC()})
	if err := el.Proclaim(cctx, string(info)); err != nil {
		return fmt.Errorf("proclaim: %w", err)
	}
	log := s.log.With().Int64("election_rev", fence.Rev).Logger()
	log.Info().Dur("campaign", time.Since(start)).Msg("leading")
	s.m.CampaignDuration.Observe(time.Since(start).Seconds())
	s.m.LeaderChanges.Inc()
	s.m.Leader.Set(1)
	if s.cfg.OnLeading != nil {
		s.cfg.OnLeading(fence)
	}
	err = s.lead(cctx, fence, log)
	s.m.Leader.Set(0)
	log.Info().Err(err).Msg("stopped leading")
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		return errors.New("session lost")
	}
	return err
}
