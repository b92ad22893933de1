package scheduler

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/queue"
)

// callTimeout bounds each etcd call the leader makes.
const callTimeout = 10 * time.Second

// batchState is what the leader knows of one active batch.
type batchState struct {
	spec    queue.BatchSpec
	loaded  bool // spec read
	sharded bool // every host has a task
	dirty   bool // results changed since the last completion check
	sweep   bool // due for an orphan sweep
}

// leader is the state of one leadership term.
type leader struct {
	s     *Scheduler
	fence queue.Fence
	log   zerolog.Logger
	fail  func(error)

	mu     sync.Mutex
	active map[string]*batchState
	wake   chan struct{}
}

func (l *leader) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// resetActive runs before each listing of the active index.
func (l *leader) resetActive() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.active {
		b.sweep, b.dirty = true, true
	}
}

// onActive follows the active-batch index.
func (l *leader) onActive(ev queue.Event) {
	id, err := l.s.q.Keys().ParseActive(string(ev.KV.Key))
	if err != nil {
		l.log.Warn().Err(err).Msg("ignoring malformed active-batch key")
		return
	}
	l.mu.Lock()
	if ev.Delete {
		delete(l.active, id)
	} else if _, ok := l.active[id]; !ok {
		l.active[id] = &batchState{dirty: true, sweep: true}
	}
	l.mu.Unlock()
	l.poke()
}

// markDirty notes that a batch's results changed.
func (l *leader) markDirty(batch string) {
	l.mu.Lock()
	if b, ok := l.active[batch]; ok {
		b.dirty = true
	}
	l.mu.Unlock()
}

// loop does the leader's etcd work on one goroutine: sharding new batches,
// completion checks and sweeps.
func (l *leader) loop(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	sweep := time.NewTicker(l.s.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-tick.C:
		case <-sweep.C:
			l.mu.Lock()
			for _, b := range l.active {
				b.sweep = true
			}
			l.mu.Unlock()
		}
		l.step(ctx)
	}
}

// step handles every active batch once.
func (l *leader) step(ctx context.Context) {
	l.mu.Lock()
	ids := make([]string, 0, len(l.active))
	for id := range l.active {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if err := l.handle(ctx, id); err != nil {
			if errors.Is(err, queue.ErrNotLeader) {
				l.fail(err)
				return
			}
			if ctx.Err() == nil {
				l.log.Warn().Err(err).Str("batch_id", id).Msg("batch step failed; will retry")
			}
		}
	}
}

func (l *leader) handle(ctx context.Context, id string) error {
	l.mu.Lock()
	b, ok := l.active[id]
	if !ok {
		l.mu.Unlock()
		return nil
	}
	st := *b
	b.dirty, b.sweep = false, false
	l.mu.Unlock()
	restore := func() {
		l.mu.Lock()
		if b, ok := l.active[id]; ok {
			b.dirty, b.sweep = b.dirty || st.dirty, b.sweep || st.sweep
		}
		l.mu.Unlock()
	}

	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if !st.loaded {
		spec, err := l.s.q.LoadBatch(cctx, id)
		if err != nil {
			restore()
			return err
		}
		st.spec, st.loaded = spec, true
		l.set(id, func(b *batchState) { b.spec, b.loaded = spec, true })
	}
	if !st.sharded {
		start := time.Now()
		// Sharding a large batch takes many transactions: give it its own
		// deadline, bounded by the leader's context.
		sctx, scancel := context.WithTimeout(ctx, 10*time.Minute)
		err := l.s.q.Shard(sctx, l.fence, st.spec)
		scancel()
		if err != nil {
			restore()
			return err
		}
		l.set(id, func(b *batchState) { b.sharded = true })
		l.log.Info().Str("batch_id", id).Int("hosts", st.spec.Hosts).Dur("took", time.Since(start)).Msg("batch sharded")
		st.dirty = true
	}
	if st.sweep {
		if err := l.sweep(ctx, st.spec); err != nil {
			restore()
			return err
		}
	}
	if st.dirty {
		if err := l.checkDone(cctx, st.spec); err != nil {
			restore()
			return err
		}
	}
	return nil
}

func (l *leader) set(id string, f func(*batchState)) {
	l.mu.Lock()
	if b, ok := l.active[id]; ok {
		f(b)
	}
	l.mu.Unlock()
}

// sweep recovers a batch's orphaned tasks.
func (l *leader) sweep(ctx context.Context, spec queue.BatchSpec) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	orphans, err := l.s.q.Orphans(cctx, spec)
	if err != nil {
		return err
	}
	for _, task := range orphans {
		if err := l.recover(ctx, spec.ID, task); err != nil {
			return err
		}
	}
	return nil
}

func (l *leader) recover(ctx context.Context, batch, task string) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := l.s.q.Recover(cctx, l.fence, batch, task, l.s.cfg.MaxAttempts, time.Now())
	switch {
	case err != nil:
		return err
	case out == queue.RecoverRequeued:
		l.log.Info().Str("batch_id", batch).Str("task_id", task).Msg("requeued task whose worker was lost")
	case out == queue.RecoverGaveUp:
		l.log.Warn().Str("batch_id", batch).Str("task_id", task).Msg("task out of attempts")
		l.markDirty(batch)
	}
	return nil
}

// checkDone writes the batch summary once every host has a result.
func (l *leader) checkDone(ctx context.Context, spec queue.BatchSpec) error {
	// Counting is cheap; listing every result is not, so list only once
	// the count says the batch may be done.
	n, err := l.s.q.ResultCount(ctx, spec.ID)
	if err != nil || n < spec.Hosts {
		return err
	}
	tally, err := l.s.q.Tally(ctx, spec.ID)
	if err != nil {
		return err
	}
	if len(tally) < spec.Hosts {
		return nil
	}
	sum := queue.SummaryOf(spec.Hosts, tally, time.Now())
	if err := l.s.q.Finish(ctx, l.fence, spec.ID, sum); err != nil {
		return err
	}
	l.log.Info().Str("batch_id", spec.ID).Int("hosts", spec.Hosts).
		Int("ok", sum.Counts[queue.StatusOK]).Int("fail", sum.Counts[queue.StatusFail]).
		Int("error", sum.Counts[queue.StatusError]).Msg("batch finished")
	return nil
}

// watchResults marks batches dirty as their results arrive.
func (l *leader) watchResults(ctx context.Context) {
	keys := l.s.q.Keys()
	l.watchLive(ctx, keys.Results(), func(evs []*clientv3.Event) {
		for _, ev := range evs {
			if batch, _, err := keys.ParseResult(string(ev.Kv.Key)); err == nil {
				l.markDirty(batch)
			}
		}
		l.poke()
	}, func() { l.resetActive() })
}

// watchClaims recovers tasks whose claims vanished without a result: the
// worker's lease expired (it died or was partitioned) or it released them.
func (l *leader) watchClaims(ctx context.Context) {
	keys := l.s.q.Keys()
	l.watchLive(ctx, keys.Claims(), func(evs []*clientv3.Event) {
		for _, ev := range evs {
			if ev.Type != mvccpb.DELETE {
				continue
			}
			batch, task, err := keys.ParseClaim(string(ev.Kv.Key))
			if err != nil {
				continue
			}
			// A completion deletes the claim too; Recover sees its result
			// and does nothing.
			if err := l.recover(ctx, batch, task); err != nil {
				if errors.Is(err, queue.ErrNotLeader) {
					l.fail(err)
					return
				}
				l.log.Warn().Err(err).Str("batch_id", batch).Str("task_id", task).Msg("recover failed; the sweep will retry")
			}
		}
	}, func() { l.resetActive(); l.poke() })
}

// watchLive watches prefix from now on. When the watch breaks it calls
// restarted (so the caller can catch up by listing) and watches again.
func (l *leader) watchLive(ctx context.Context, prefix string, fn func([]*clientv3.Event), restarted func()) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range l.s.q.Client().Watch(wctx, prefix, clientv3.WithPrefix()) {
			if resp.Err() != nil {
				break
			}
			backoff = 100 * time.Millisecond
			fn(resp.Events)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		restarted()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
