package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/check"
	"github.com/patrol-dev/patrol/queue"
)

// Defaults for Config.
const (
	DefaultConcurrency = 64
	DefaultLeaseTTL    = 10 * time.Second
	DefaultTaskTimeout = 60 * time.Second
)

// Config configures a Worker. Zero fields take the defaults noted.
type Config struct {
	// ID names the worker in claims, results and logs. Required.
	ID string
	// Concurrency is how many checks run at once. Default 64.
	Concurrency int
	// LeaseTTL is the session lease TTL: a dead worker's tasks are
	// requeued about this long after it died. Default 10s, minimum 2s.
	LeaseTTL time.Duration
	// TaskTimeout bounds one check run, on top of the check's own
	// timeouts. Default 60s.
	TaskTimeout time.Duration
	// Log receives the worker's log lines.
	Log zerolog.Logger
}

// Stats are a worker's running counts.
type Stats struct {
	Claimed   int64 // tasks claimed
	Committed int64 // results committed
	Rejected  int64 // zombie completions rejected by the claim fence
	Released  int64 // claims given back unfinished
}

// Worker claims and runs tasks.
type Worker struct {
	q   *queue.Queue
	cfg Config
	log zerolog.Logger

	claimed, committed, rejected, released atomic.Int64

	mu     sync.Mutex
	checks map[string]checkEntry // by batch ID
}

type checkEntry struct {
	check check.Check
	err   error
}

// New validates cfg and returns a Worker.
func New(q *queue.Queue, cfg Config) (*Worker, error) {
	if cfg.ID == "" {
		return nil, errors.New("worker: ID is required")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Concurrency < 0 {
		return nil, fmt.Errorf("worker: concurrency %d must be positive", cfg.Concurrency)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("worker: lease TTL %s is below etcd's 2s minimum", cfg.LeaseTTL)
	}
	if cfg.TaskTimeout == 0 {
		cfg.TaskTimeout = DefaultTaskTimeout
	}
	return &Worker{q: q, cfg: cfg, log: cfg.Log.With().Str("worker_id", cfg.ID).Logger(), checks: map[string]checkEntry{}}, nil
}

// Stats returns the worker's counts so far.
func (w *Worker) Stats() Stats {
	return Stats{Claimed: w.claimed.Load(), Committed: w.committed.Load(), Rejected: w.rejected.Load(), Released: w.released.Load()}
}

// Run claims and runs tasks until ctx ends, opening a new session whenever
// the current one is lost. It returns nil when ctx is cancelled.
func (w *Worker) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := w.session(ctx)
		if ctx.Err() != nil {
			break
		}
		w.log.Warn().Err(err).Dur("retry_in", backoff).Msg("worker session ended; starting a new one")
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	st := w.Stats()
	w.log.Info().Int64("claimed", st.Claimed).Int64("committed", st.Committed).
		Int64("rejected", st.Rejected).Int64("released", st.Released).Msg("worker stopped")
	return nil
}

// session runs the claim loop on one lease until the lease is lost or ctx ends.
func (w *Worker) session(ctx context.Context) error {
	sess, err := concurrency.NewSession(w.q.Client(),
		concurrency.WithTTL(int(w.cfg.LeaseTTL.Seconds())), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		w.q.Client().Revoke(cctx, sess.Lease())
		sess.Orphan()
	}()
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Str("lease", fmt.Sprintf("%x", sess.Lease())).Msg("worker started")

	// sctx ends with ctx or with the session.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-sctx.Done():
		}
	}()

	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { w.watchReady(sctx, wake) })

	slots := make(chan struct{}, w.cfg.Concurrency)
	err = w.claimLoop(sctx, sess.Lease(), slots, wake, &wg)
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	return errors.New("lease lost")
}

func (w *Worker) claimLoop(ctx context.Context, lease clientv3.LeaseID, slots chan struct{}, wake <-chan struct{}, wg *sync.WaitGroup) error {
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		free := cap(slots) - len(slots)
		if free > 0 {
			n, err := w.claimSome(ctx, lease, min(free, queue.MaxClaim), slots, wg)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				if errors.Is(err, errLeaseGone) {
					return err
				}
				w.log.Warn().Err(err).Msg("claim failed")
			} else if n > 0 {
				continue // there may be more
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		}
	}
}

var errLeaseGone = errors.New("worker: lease lost")

// claimSome claims up to n tasks and starts them. It returns how many.
func (w *Worker) claimSome(ctx context.Context, lease clientv3.LeaseID, n int, slots chan struct{}, wg *sync.WaitGroup) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ready, bad, err := w.q.ListReady(cctx, rand.IntN(queue.DefaultShards), n)
	if err != nil {
		return 0, err
	}
	for _, b := range bad {
		w.log.Error().Str("key", b.Key).Err(b.Err).Msg("malformed ready task; skipping it")
	}
	if len(ready) == 0 {
		return 0, nil
	}
	claimed, err := w.q.Claim(cctx, lease, w.cfg.ID, ready, time.Now())
	if err != nil {
		if isLeaseNotFound(err) {
			return 0, errLeaseGone
		}
		return 0, err
	}
	w.claimed.Add(int64(len(claimed)))
	for _, c := range claimed {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			w.run(ctx, c)
		})
	}
	return len(claimed), nil
}

// run runs one claimed task and commits its result.
func (w *Worker) run(ctx context.Context, c queue.Claimed) {
	log := w.log.With().Str("batch_id", c.Task.Batch).Str("task_id", c.Task.ID).
		Str("host", c.Task.Host.Name).Int("attempt", c.Task.Attempt).Logger()
	start := time.Now()
	res := queue.Result{Host: c.Task.Host.Name, Attempts: c.Task.Attempt, Worker: w.cfg.ID}

	chk, err := w.checkFor(ctx, c.Task.Batch)
	if err != nil {
		res.Status, res.Message = queue.StatusError, err.Error()
	} else {
		tctx, cancel := context.WithTimeout(ctx, w.cfg.TaskTimeout)
		r := chk.Run(tctx, c.Task.Host)
		cancel()
		res.Status, res.Message = queue.Status(r.Status), r.Message
	}
	if ctx.Err() != nil {
		// Shutting down or lost the session: the check was cut short, so
		// its outcome says nothing about the host. Give the task back.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := w.q.Release(rctx, c); err == nil {
			w.released.Add(1)
		}
		log.Debug().Msg("released unfinished task")
		return
	}
	res.DurationMS = time.Since(start).Milliseconds()
	res.FinishedAt = time.Now().UTC()

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ok, err := w.q.Complete(cctx, c, res)
	switch {
	case err != nil:
		// The outcome is unknown: the scheduler requeues the task if the
		// commit did not land and the claim goes with the lease.
		log.Warn().Err(err).Msg("commit failed")
	case !ok:
		w.rejected.Add(1)
		log.Warn().Int64("claim_rev", c.ClaimRev).Msg("zombie completion rejected: the claim is no longer ours")
	default:
		w.committed.Add(1)
		log.Debug().Str("status", string(res.Status)).Msg("result committed")
	}
}

// checkFor returns the check a batch runs, built once per batch.
func (w *Worker) checkFor(ctx context.Context, batch string) (check.Check, error) {
	w.mu.Lock()
	e, ok := w.checks[batch]
	w.mu.Unlock()
	if ok {
		return e.check, e.err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	spec, err := w.q.LoadBatch(cctx, batch)
	if err != nil {
		return nil, fmt.Errorf("load batch %s: %w", batch, err) // not cached: may be transient
	}
	chk, err := check.New(spec.Check, spec.Params)
	if err != nil {
		err = fmt.Errorf("worker %s cannot run this check: %w", w.cfg.ID, err)
	}
	w.mu.Lock()
	if len(w.checks) > 1000 {
		clear(w.checks)
	}
	w.checks[batch] = checkEntry{check: chk, err: err}
	w.mu.Unlock()
	return chk, err
}

// watchReady pokes wake whenever a task becomes ready.
func (w *Worker) watchReady(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range w.q.Client().Watch(wctx, w.q.Keys().Ready(), clientv3.WithPrefix(), clientv3.WithFilterDelete()) {
			if resp.Err() != nil {
				break
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
