package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// callTimeout bounds each etcd call the leader makes.
const callTimeout = 10 * time.Second

// Recovery reasons, recorded in the lost attempt's history.
const (
	reasonLost    = "worker lost: its lease expired or it released the task"
	reasonRevoked = "claim revoked: the attempt overran its timeout"
)

// batchState is what the leader knows of one active batch.
type batchState struct {
	spec      queue.BatchSpec
	loaded    bool      // spec read
	sharded   bool      // every host has a task
	stopped   bool      // pending tasks were ended (cancel, max failures)
	cancel    bool      // a cancel was requested
	retried   bool      // a pending retry request was carried out
	lastTall  time.Time // when failures were last counted by reading every result
	lastCount int       // how many results there were when failures were last counted
	// results follows the batch's results from when it is loaded: its
	// last result wakes the loop, and the summary is built from it.
	results  *queue.ResultTally
	unfollow context.CancelFunc // stops results
}

// leader is the state of one leadership term. Every etcd write goes
// through the queue with l.fence.
type leader struct {
	s     *Scheduler
	fence queue.Fence
	log   zerolog.Logger
	fail  func(error)

	mu      sync.Mutex
	active  map[string]*batchState
	delayed map[string]*mvccpb.KeyValue // delayed tasks by key
	revoked map[string]bool             // groups this term revoked
	workers map[string]string           // live worker ID -> zone
	leaving map[string]bool             // workers that said they are stopping cleanly
	written map[string]string           // zone -> the assignment this term last wrote
	wake    chan struct{}

	following sync.WaitGroup // the batches' result tallies
}

func (l *leader) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
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
		if b, ok := l.active[id]; ok && b.unfollow != nil {
			b.unfollow()
		}
		delete(l.active, id)
	} else if _, ok := l.active[id]; !ok {
		l.active[id] = &batchState{}
	}
	l.mu.Unlock()
	l.poke()
}

// onWorker follows worker registrations.
func (l *leader) onWorker(ev queue.Event) {
	id := string(ev.KV.Key)[len(l.s.q.Keys().Workers()):]
	l.mu.Lock()
	if ev.Delete {
		// A worker that stops cleanly says so before it revokes its
		// lease; any other registration that goes, went with its lease.
		zone, known := l.workers[id]
		if known && !l.leaving[id] {
			l.s.m.LeaseExpirations.Inc()
			l.log.Warn().Str("worker_id", id).Str("zone", zone).Msg("worker lease expired: the worker stopped without revoking it; its claims are requeued")
		}
		delete(l.workers, id)
		delete(l.leaving, id)
	} else {
		var w queue.WorkerInfo
		if err := json.Unmarshal(ev.KV.Value, &w); err == nil {
			l.workers[id] = w.Zone
			if w.Stopping {
				l.leaving[id] = true
			}
		}
	}
	l.mu.Unlock()
	l.poke()
}

func (l *leader) resetWorkers() {
	l.mu.Lock()
	clear(l.workers)
	clear(l.leaving)
	l.mu.Unlock()
}

// assign spreads each zone's shards over its live workers, writing an
// assignment only when it changed.
func (l *leader) assign(ctx context.Context) {
	l.mu.Lock()
	shards := map[string]int{}
	byZone := map[string][]string{}
	for id, z := range l.workers {
		if l.leaving[id] {
			continue // stopping: its shards go to the others now
		}
		byZone[z] = append(byZone[z], id)
		shards[z] = max(shards[z], queue.DefaultShards)
	}
	for _, b := range l.active {
		for _, z := range b.spec.Zones {
			shards[z] = max(shards[z], b.spec.Shards, queue.DefaultShards)
		}
	}
	want := map[string]queue.Assignment{}
	for z, n := range shards {
		ids := byZone[z]
		slices.Sort(ids)
		a := queue.Assign(n, ids)
		if string(mustJSON(a)) != l.written[z] {
			want[z] = a
		}
	}
	l.mu.Unlock()
	for z, a := range want {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := l.s.q.SetAssignment(cctx, l.fence, z, a)
		cancel()
		if !l.check(err, "assign shards", func(e *zerolog.Event) *zerolog.Event { return e.Str("zone", z) }) {
			return
		}
		l.mu.Lock()
		l.written[z] = string(mustJSON(a))
		l.mu.Unlock()
		l.log.Info().Str("zone", z).Int("shards", a.Shards).Int("workers", len(a.Workers)).Msg("shards assigned")
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// onCancel follows cancel requests.
func (l *leader) onCancel(ev queue.Event) {
	if ev.Delete {
		return
	}
	id := string(ev.KV.Key)[len(l.s.q.Keys().Cancels()):]
	l.mu.Lock()
	if b, ok := l.active[id]; ok {
		b.cancel = true
	}
	l.mu.Unlock()
	l.poke()
}

// onDelayed follows tasks waiting out a backoff.
func (l *leader) onDelayed(ev queue.Event) {
	l.mu.Lock()
	if ev.Delete {
		delete(l.delayed, string(ev.KV.Key))
	} else {
		l.delayed[string(ev.KV.Key)] = ev.KV
	}
	l.mu.Unlock()
}

func (l *leader) resetDelayed() {
	l.mu.Lock()
	clear(l.delayed)
	l.mu.Unlock()
}

// loop does the leader's periodic work on one goroutine.
func (l *leader) loop(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sweep := time.NewTicker(l.s.cfg.SweepInterval)
	defer sweep.Stop()
	retain := time.NewTicker(time.Minute)
	defer retain.Stop()
	// The batches' result tallies end with ctx.
	defer l.following.Wait()
	l.sweep(ctx) // catch up on what happened while no one led
	l.purge(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-tick.C:
		case <-sweep.C:
			l.sweep(ctx)
		case <-retain.C:
			l.purge(ctx)
		}
		l.promote(ctx)
		l.step(ctx)
		l.assign(ctx)
	}
}

// check handles an error from a leader write: a lost fence ends the term.
func (l *leader) check(err error, what string, ev func(*zerolog.Event) *zerolog.Event) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, queue.ErrNotLeader) {
		l.fail(err)
		return false
	}
	if !errors.Is(err, context.Canceled) {
		ev(l.log.Warn().Err(err)).Msg(what + " failed; will retry")
	}
	return false
}

func noFields(e *zerolog.Event) *zerolog.Event { return e }

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
		err := l.handle(ctx, id)
		if !l.check(err, "batch step", func(e *zerolog.Event) *zerolog.Event { return e.Str("batch_id", id) }) && errors.Is(err, queue.ErrNotLeader) {
			return
		}
	}
}

func (l *leader) get(id string) (batchState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.active[id]
	if !ok {
		return batchState{}, false
	}
	return *b, true
}

func (l *leader) set(id string, f func(*batchState)) {
	l.mu.Lock()
	if b, ok := l.active[id]; ok {
		f(b)
	}
	l.mu.Unlock()
}

func (l *leader) handle(ctx context.Context, id string) error {
	st, ok := l.get(id)
	if !ok {
		return nil
	}
	q := l.s.q
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if !st.loaded {
		spec, err := q.LoadBatch(cctx, id)
		if err != nil {
			return err
		}
		stop, err := q.StopReason(cctx, id)
		if err != nil {
			return err
		}
		// A cancel requested before this term saw the batch.
		cancelled, err := q.CancelRequested(cctx, id)
		if err != nil {
			return err
		}
		st.spec, st.loaded, st.stopped, st.cancel = spec, true, stop != "", st.cancel || cancelled
		l.set(id, func(b *batchState) { b.spec, b.loaded, b.stopped, b.cancel = spec, true, st.stopped, st.cancel })
	}
	if st.results == nil {
		st.results = l.follow(ctx, id, st.spec.Hosts)
	}
	if !st.retried {
		req, err := q.PendingRetry(cctx, id)
		if err != nil {
			return err
		}
		if req != nil {
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Minute)
			n, err := q.RunRetry(rctx, l.fence, st.spec, *req)
			rcancel()
			if err != nil {
				return err
			}
			l.log.Info().Str("batch_id", id).Int("round", req.Round).Int("tasks", n).Msg("retry round queued")
		}
		l.set(id, func(b *batchState) { b.retried = true })
	}
	if st.cancel && !st.stopped {
		if err := l.stop(ctx, st.spec, queue.StatusCancelled); err != nil {
			return err
		}
		st.stopped = true
	}
	if !st.sharded {
		start := time.Now()
		// Sharding a large batch takes many transactions: give it its own
		// deadline, bounded by the leader's context.
		sctx, scancel := context.WithTimeout(ctx, 10*time.Minute)
		err := q.Shard(sctx, l.fence, st.spec)
		scancel()
		if err != nil {
			return err
		}
		l.set(id, func(b *batchState) { b.sharded = true })
		l.log.Info().Str("batch_id", id).Int("hosts", st.spec.Hosts).Dur("took", time.Since(start)).Msg("batch sharded")
	}
	if p := st.spec.Policy.Parallel; p > 0 && !st.stopped {
		// Release held tasks no faster than the batch's fleet-wide cap.
		inflight, err := q.InFlight(cctx, st.spec)
		if err != nil {
			return err
		}
		if _, err := q.ReleaseHeld(cctx, l.fence, st.spec, p-inflight); err != nil {
			return err
		}
	}
	n, err := q.ResultCount(cctx, id)
	if err != nil {
		return err
	}
	if n < st.spec.Hosts {
		return l.checkFailures(ctx, st, n)
	}
	return l.finish(cctx, st)
}

// follow starts following a batch's results until it leaves the active
// set or the term ends. The last result pokes the loop, so that the batch
// finishes as soon as it is done rather than at the next tick.
func (l *leader) follow(ctx context.Context, id string, hosts int) *queue.ResultTally {
	fctx, cancel := context.WithCancel(ctx)
	t := l.s.q.FollowResults(id, func(n int) {
		if n >= hosts {
			l.poke()
		}
	})
	active := false
	l.set(id, func(b *batchState) { b.results, b.unfollow, active = t, cancel, true })
	if !active {
		cancel()
		return nil
	}
	l.following.Go(func() { t.Run(fctx) })
	return t
}

// checkFailures stops a batch with --max-failures once it is exceeded.
// It counts the failures in the batch's result tally, which the leader
// follows anyway; while the tally is not following (listing, or its watch
// broke) it reads every result instead, and for a large batch at most once
// a second. Either way it counts only when results have arrived since.
func (l *leader) checkFailures(ctx context.Context, st batchState, results int) error {
	if st.spec.Policy.MaxFailures == "" || st.stopped || results == st.lastCount {
		return nil
	}
	limit, err := queue.ParseMaxFailures(st.spec.Policy.MaxFailures, st.spec.Hosts)
	if err != nil {
		return err
	}
	var (
		failed, counted int // failed out of counted results
		ok              bool
	)
	if st.results != nil {
		// The tally may lag the count just read: remember how many results
		// it had, so that the next pass counts again once it catches up.
		failed, counted, ok = st.results.Failed()
	}
	if !ok {
		if st.spec.Hosts > 5000 && time.Since(st.lastTall) < time.Second {
			return nil
		}
		l.set(st.spec.ID, func(b *batchState) { b.lastTall = time.Now() })
		if failed, err = l.countFailed(ctx, st.spec.ID); err != nil {
			return err
		}
		counted = results
	}
	l.set(st.spec.ID, func(b *batchState) { b.lastCount = counted })
	if failed <= limit {
		return nil
	}
	l.log.Warn().Str("batch_id", st.spec.ID).Int("failed", failed).Int("max_failures", limit).Msg("too many failures: skipping the hosts not yet started")
	return l.stop(ctx, st.spec, queue.StatusSkipped)
}

// countFailed reads every result of a batch and returns how many failed.
func (l *leader) countFailed(ctx context.Context, batch string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	tally, err := l.s.q.Tally(cctx, batch)
	failed := 0
	for _, s := range tally {
		if s.Failed() {
			failed++
		}
	}
	return failed, err
}

// stop ends a batch's not-yet-started tasks with why.
func (l *leader) stop(ctx context.Context, spec queue.BatchSpec, why queue.Status) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := l.s.q.StopBatch(cctx, l.fence, spec.ID, why); err != nil {
		return err
	}
	n, err := l.s.q.StopPending(cctx, l.fence, spec, why)
	if err != nil {
		return err
	}
	l.set(spec.ID, func(b *batchState) { b.stopped = true })
	l.log.Info().Str("batch_id", spec.ID).Str("status", string(why)).Int("tasks", n).Msg("batch stopped early")
	return nil
}

// finish writes the batch summary once every host has a result.
func (l *leader) finish(ctx context.Context, st batchState) error {
	spec := st.spec
	tally, err := l.tally(ctx, st)
	if err != nil || len(tally) < spec.Hosts {
		return err
	}
	sum := queue.SummaryOf(spec.Hosts, tally, time.Now())
	if err := l.s.q.Finish(ctx, l.fence, spec.ID, sum); err != nil {
		return err
	}
	l.s.m.BatchesFinished.Inc()
	ev := l.log.Info().Str("batch_id", spec.ID).Int("hosts", spec.Hosts)
	for st, n := range sum.Counts {
		ev = ev.Int(string(st), n)
	}
	ev.Msg("batch finished")
	return nil
}

// tally returns each host's result status: from the batch's result tally
// once it has caught up with etcd, which is immediate at the end of a
// batch; otherwise by reading every result.
func (l *leader) tally(ctx context.Context, st batchState) (map[string]queue.Status, error) {
	if st.results != nil {
		if n, ok := st.results.Count(); ok && n >= st.spec.Hosts {
			tctx, cancel := context.WithTimeout(ctx, time.Second)
			tally, err := st.results.Current(tctx)
			cancel()
			if err == nil {
				return tally, nil
			}
			l.log.Debug().Err(err).Str("batch_id", st.spec.ID).Msg("result tally did not catch up; reading every result")
		}
	}
	return l.s.q.Tally(ctx, st.spec.ID)
}

// policy returns a batch's retry policy, for recovery.
func (l *leader) policy(ctx context.Context) func(string) (queue.Policy, error) {
	return func(batch string) (queue.Policy, error) {
		if st, ok := l.get(batch); ok && st.loaded {
			return st.spec.Policy, nil
		}
		spec, err := l.s.q.LoadBatch(ctx, batch)
		if errors.Is(err, queue.ErrBatchNotFound) {
			return queue.Policy{MaxAttempts: 1}, nil // purged: end what is left of it
		}
		return spec.Policy, err
	}
}

// recoverGroup requeues what a group whose claim vanished left unfinished.
// seen is when the leader saw the claim gone, for the requeue delay.
func (l *leader) recoverGroup(ctx context.Context, group string, seen time.Time) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	l.mu.Lock()
	reason := reasonLost
	if l.revoked[group] {
		reason = reasonRevoked
		delete(l.revoked, group)
	}
	l.mu.Unlock()
	requeued, dead, err := l.s.q.RecoverGroup(cctx, l.fence, group, l.policy(cctx), reason, time.Now())
	if err != nil {
		return err
	}
	if requeued+dead > 0 {
		l.s.m.RequeueDelay.Observe(time.Since(seen).Seconds())
		l.s.m.TasksRequeued.Add(float64(requeued))
		l.s.m.DeadLetters(metrics.DeadOutOfAttempts, dead)
		l.log.Info().Str("group", group).Int("requeued", requeued).Int("dead", dead).Str("reason", reason).Msg("recovered tasks of a lost claim")
	}
	return nil
}

// sweep recovers groups whose claim is gone and revokes overdue claims: the
// safety net under the claim watch, and the only way overruns are caught.
func (l *leader) sweep(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	q := l.s.q
	groups, err := q.Groups(cctx)
	if !l.check(err, "sweep", noFields) {
		return
	}
	now := time.Now()
	for _, g := range groups {
		switch {
		case g.ClaimRev == 0:
			if !l.check(l.recoverGroup(ctx, g.ID, now), "recover", func(e *zerolog.Event) *zerolog.Event { return e.Str("group", g.ID) }) {
				return
			}
		case now.After(g.Deadline.Add(l.s.cfg.RevokeGrace)):
			l.mu.Lock()
			l.revoked[g.ID] = true
			l.mu.Unlock()
			ok, err := q.Revoke(cctx, l.fence, g.ID, g.ClaimRev)
			if !l.check(err, "revoke", noFields) {
				return
			}
			if ok {
				l.s.m.ClaimsRevoked.Inc()
				l.log.Warn().Str("group", g.ID).Str("worker", g.Worker).Time("deadline", g.Deadline).Msg("revoked an overdue claim")
			}
		}
	}
}

// promote makes delayed tasks whose backoff has passed ready again.
func (l *leader) promote(ctx context.Context) {
	now := time.Now()
	var due []*mvccpb.KeyValue
	l.mu.Lock()
	for k, kv := range l.delayed {
		var t struct {
			NotBefore time.Time `json:"not_before"`
		}
		if err := json.Unmarshal(kv.Value, &t); err != nil || !t.NotBefore.After(now) {
			due = append(due, kv)
			delete(l.delayed, k)
		}
	}
	l.mu.Unlock()
	if len(due) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := l.s.q.Promote(cctx, l.fence, due)
	l.check(err, "promote", noFields)
}

// purge deletes batches finished longer ago than the retention.
func (l *leader) purge(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	old, err := l.s.q.FinishedBefore(cctx, time.Now().Add(-l.s.cfg.Retention))
	if !l.check(err, "retention", noFields) {
		return
	}
	for _, id := range old {
		if !l.check(l.s.q.Purge(cctx, l.fence, id), "purge", noFields) {
			return
		}
		l.log.Info().Str("batch_id", id).Dur("retention", l.s.cfg.Retention).Msg("purged a finished batch")
	}
	l.endLost(ctx)
	n, err := l.s.q.CleanUploads(cctx, l.fence, time.Now().Add(-queue.AbandonedUploads))
	if l.check(err, "upload cleanup", noFields) && n > 0 {
		l.log.Info().Int("uploads", n).Msg("deleted inventory chunks of submits that died before committing")
	}
}

// watchClaims recovers groups as their claims vanish.
func (l *leader) watchClaims(ctx context.Context) {
	keys := l.s.q.Keys()
	l.watchLive(ctx, keys.Claims(), func(evs []*clientv3.Event) {
		seen := time.Now()
		for _, ev := range evs {
			if ev.Type != mvccpb.DELETE {
				continue
			}
			group, err := keys.ParseGroup(string(ev.Kv.Key))
			if err != nil {
				continue
			}
			// A finished group's claim goes with its records; recovery
			// finds nothing to do.
			if err := l.recoverGroup(ctx, group, seen); err != nil {
				if !l.check(err, "recover", func(e *zerolog.Event) *zerolog.Event { return e.Str("group", group) }) && errors.Is(err, queue.ErrNotLeader) {
					return
				}
			}
		}
	}, func() { l.sweep(ctx) })
}

// watchLive watches prefix from now on. When the watch breaks it calls
// restarted (so the caller can catch up) and watches again.
func (l *leader) watchLive(ctx context.Context, prefix string, fn func([]*clientv3.Event), restarted func()) {
	backoff := 100 * time.Millisecond
	down := false
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		err := error(queue.ErrWatchClosed)
		for resp := range l.s.q.Client().Watch(wctx, prefix, clientv3.WithPrefix()) {
			if err = resp.Err(); err != nil {
				break
			}
			err = queue.ErrWatchClosed
			backoff, down = 100*time.Millisecond, false
			fn(resp.Events)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.s.q.WatchRestarted("claims", err, down)
		down = true
		restarted()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// endLost ends dead the tasks of active batches that are nowhere (their
// records were malformed and quarantined), so that the batch can finish.
func (l *leader) endLost(ctx context.Context) {
	l.mu.Lock()
	var specs []queue.BatchSpec
	for _, b := range l.active {
		if b.sharded {
			specs = append(specs, b.spec)
		}
	}
	l.mu.Unlock()
	for _, spec := range specs {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		lost, err := l.s.q.Lost(cctx, spec)
		if err == nil && len(lost) > 0 {
			var n int
			n, err = l.s.q.EndLost(cctx, l.fence, spec.ID, lost, "task record lost: it was malformed and moved under "+
				l.s.q.Keys().Quarantine("")+", or deleted by hand")
			if err == nil {
				l.s.m.DeadLetters(metrics.DeadLost, n)
				l.log.Warn().Str("batch_id", spec.ID).Int("tasks", n).Msg("ended lost tasks dead")
			}
		}
		cancel()
		if !l.check(err, "lost-task check", noFields) {
			return
		}
	}
}
