package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// run is one session's state.
type run struct {
	w        *Worker
	lease    clientv3.LeaseID
	slots    chan struct{} // one per running check
	freed    chan struct{} // poked when a slot frees up
	outcomes chan queue.Outcome
	lost     <-chan struct{} // closed when the session's lease is gone

	listErrs, claimErrs, commitErrs *errLog // failures, logged once per kind and minute

	// held is how many tasks the worker holds: claimed and not yet
	// finished (running, or waiting for a slot), or in a claim still in
	// flight. The claim loop adds; whoever lets a task go subtracts.
	held atomic.Int64
	// checkNanos is how long a check takes, averaged (ns); rttNanos how
	// long a listing or a claim takes.
	checkNanos, rttNanos atomic.Int64

	mu     sync.Mutex
	groups map[*queue.Group]struct{} // claimed groups not yet finished
	assign queue.Assignment          // the zone's shard assignment, as last read
}

func newRun(w *Worker, lease clientv3.LeaseID, lost <-chan struct{}) *run {
	return &run{w: w, lease: lease, lost: lost,
		slots: make(chan struct{}, w.cfg.Concurrency), freed: make(chan struct{}, 1),
		outcomes: make(chan queue.Outcome, w.cfg.Concurrency), groups: map[*queue.Group]struct{}{},
		listErrs:   &errLog{log: w.log, what: "listing ready tasks"},
		claimErrs:  &errLog{log: w.log, what: "claim"},
		commitErrs: &errLog{log: w.log, what: "commit"}}
}

// claimed is what a claim in flight came back with.
type claimed struct {
	ready []queue.Ready
	group *queue.Group // nil: nothing taken
	err   error
}

// ahead is how many tasks beyond its concurrency the worker claims, so
// that a slot that frees finds a task waiting rather than a claim still
// to make: as many as its checks finish in three round trips (a listing,
// a claim, and as much again for checks that finish together), at most
// twice what the claims it may have in flight hold (those claims, and the
// listing that feeds the next ones). It is measured in time, so
// a worker holds about three round trips of work beyond its slots: far
// from etcd, or with fast checks, this is what keeps every slot busy;
// next to etcd with slow checks it is none.
func (s *run) ahead() int {
	c := s.w.cfg.Concurrency
	// The link's round trip, not the current one: the baseline, which
	// the worker's own claims do not raise (or, before there is one, the
	// average).
	check, rtt := s.checkNanos.Load(), s.w.limit.base().Nanoseconds()
	if rtt == 0 {
		rtt = s.rttNanos.Load()
	}
	if check <= 0 {
		return 0
	}
	n := float64(c) * float64(3*rtt) / float64(check)
	return int(min(n+0.5, float64(2*s.w.limit.get()*queue.MaxClaim)))
}

// observeRTT adds one etcd round trip of the claim path (a listing or a
// claim) to the running average.
func (s *run) observeRTT(d time.Duration) {
	old := s.rttNanos.Load()
	s.rttNanos.Store((3*old + d.Nanoseconds()) / 4)
}

// claimLoop lists ready tasks and claims them as groups until ctx ends.
// A listing and up to the request limit of claims are in flight at once,
// each in a goroutine of its own, so that neither waits on the other's
// round trip: what a listing returns waits (queued) for a claim to carry
// it, and the next listing goes out while those claims are in flight.
// The cursor is touched by one goroutine at a time: the listing while one
// is in flight, the loop otherwise. Claimed tasks start as slots free
// (taskCtx bounds the checks).
// wakeKind is what a wake asks of the claim loop's cursor.
type wakeKind int

const (
	wakeAhead wakeKind = iota // ReadyCursor.ResetAhead: sharding wrote tasks
	wakeAll                   // ReadyCursor.Reset: tasks made ready anywhere
)

// fullPollEvery is how many of the claim loop's once-a-second polls pass
// between two that reset its cursor fully (ReadyCursor.Reset), reading
// behind every cursor: the others look ahead only. Every task made ready
// again wakes for a full reset; the poll is for a wake that was missed.
const fullPollEvery = 5

func (s *run) claimLoop(ctx, taskCtx context.Context, wake <-chan wakeKind, tasks *sync.WaitGroup) error {
	w := s.w
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	cursor := queue.NewReadyCursor()
	results := make(chan claimed, MaxRequestLimit)
	answers := make(chan listed, 1)
	var (
		inflight int             // claims in flight
		listing  bool            // a listing is in flight
		queued   []queue.Ready   // listed, waiting for a claim to carry them
		forget   [][]queue.Ready // answered claims' keys, for the cursor
		reset    bool            // the cursor should look at every shard again, behind it too
		ahead    bool            // ... from where it stands
		polls    int
		dry      bool // the last listing found nothing: wait for news
		bg       sync.WaitGroup
	)
	defer func() {
		// What is still in flight: wait for it; start or give back what
		// claims took (the drain releases it), and let go of the rest.
		bg.Wait()
		if listing {
			s.held.Add(-int64((<-answers).asked))
		}
		s.held.Add(-int64(len(queued)))
		for ; inflight > 0; inflight-- {
			s.settle(taskCtx, <-results, tasks)
		}
	}()
	for {
		// Claims for what is queued, as far as the limit allows.
		for len(queued) > 0 && inflight < w.limit.get() {
			group := queued[:min(len(queued), queue.MaxClaim)]
			queued = queued[len(group):]
			inflight++
			bg.Go(func() { results <- s.claim(ctx, group) })
		}
		// A listing, when none is in flight and enough of the budget is
		// free: once a quarter of it (or the worker is idle), because a
		// claim costs a transaction and a group's records, and groups
		// should not be small when the worker is busy.
		budget := w.cfg.Concurrency + s.ahead()
		free := budget - int(s.held.Load())
		batch := max(1, min(budget/4, queue.MaxClaim))
		if !listing && !dry && free > 0 && (free >= batch || s.held.Load() == 0) {
			switch {
			case reset:
				cursor.Reset()
			case ahead:
				cursor.ResetAhead()
			}
			reset, ahead = false, false
			for _, f := range forget {
				cursor.Forget(f)
			}
			forget = forget[:0]
			listing = true
			bg.Go(func() {
				start := time.Now()
				ready, err := s.list(ctx, cursor, free)
				answers <- listed{ready: ready, asked: free, err: err, took: time.Since(start)}
			})
			// Held from now: the budget is spent when asked for, and what
			// the listing did not find is given back when it answers.
			s.held.Add(int64(free))
		}
		select {
		case <-ctx.Done():
			return nil
		case l := <-answers:
			listing = false
			s.held.Add(int64(len(l.ready) - l.asked))
			switch {
			case l.err != nil:
				if ctx.Err() == nil {
					s.listErrs.fail(l.err, nil)
				}
				dry = true
			case len(l.ready) == 0:
				// Nothing, unless a wake came while it was out: the listing
				// may have been read before what the wake announced.
				dry = !reset && !ahead
			default:
				s.listErrs.ok()
				s.observeRTT(l.took)
				w.limit.sample(l.took)
				queued = append(queued, l.ready...)
			}
			continue
		case r := <-results:
			inflight--
			if listing {
				forget = append(forget, r.ready)
			} else {
				cursor.Forget(r.ready)
			}
			s.settle(taskCtx, r, tasks)
			if errors.Is(r.err, errLeaseGone) {
				return r.err
			}
		case k := <-wake:
			// Tasks were made ready: look in every shard again.
			if k == wakeAll {
				reset = true
			} else {
				ahead = true
			}
		case <-poll.C:
			polls++
			if polls%fullPollEvery == 0 {
				reset = true
			} else {
				ahead = true
			}
		case <-s.freed:
		}
		dry = false
	}
}

// listed is what a listing came back with.
type listed struct {
	ready []queue.Ready
	asked int // the budget it was given, counted as held meanwhile
	err   error
	took  time.Duration
}

// list returns up to n claimable tasks, quarantining malformed ones, and
// makes sure the worker knows each task's batch.
func (s *run) list(ctx context.Context, cursor *queue.ReadyCursor, n int) ([]queue.Ready, error) {
	w := s.w
	cctx, cancel := context.WithTimeout(ctx, w.limit.timeout(w.cfg.CallTimeout))
	defer cancel()
	// The order covers every shard of the batches the worker knows, even
	// before the leader's assignment has grown to a large batch's shards.
	batches := w.listBatches()
	s.mu.Lock()
	a := s.assign
	s.mu.Unlock()
	a.Shards = max(a.Shards, queue.DefaultShards)
	for _, b := range batches {
		a.Shards = max(a.Shards, b.Shards)
	}
	order := a.ShardOrder(w.cfg.ID, rand.IntN(a.Shards))
	cursor.SetBatches(batches)
	ready, bad, err := w.q.ListReadyFrom(cctx, cursor, w.cfg.Zone, order, n)
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		w.log.Error().Str("key", b.Key()).Err(b.Err).Msg("malformed ready task: quarantining it and ending it dead")
		if err := w.q.QuarantineReady(cctx, b); err != nil {
			w.log.Warn().Err(err).Str("key", b.Key()).Msg("quarantine failed")
		}
	}
	for _, r := range ready {
		if _, err := w.batch(cctx, r.Task.Batch); err != nil {
			cursor.Forget(ready)
			return nil, err
		}
	}
	return ready, nil
}

// claim claims ready as one group. It runs beside the claim loop.
func (s *run) claim(ctx context.Context, ready []queue.Ready) (c claimed) {
	w := s.w
	c.ready = ready
	cctx, cancel := context.WithTimeout(ctx, w.limit.timeout(w.cfg.CallTimeout))
	defer cancel()
	now := time.Now()
	defer func() {
		took := time.Since(now)
		switch {
		case c.err != nil:
			w.m.Claimed(metrics.ClaimError)
		case c.group == nil:
			w.m.Claimed(metrics.ClaimConflict)
		default:
			w.m.Claimed(metrics.ClaimWon)
		}
		if c.err == nil {
			s.observeRTT(took)
			w.limit.observe(took)
			w.m.ClaimDuration.Observe(took.Seconds())
		}
		if c.group != nil && w.cfg.OnClaim != nil {
			w.cfg.OnClaim(took, len(c.group.Running.Tasks))
		}
	}()
	group := fmt.Sprintf("%x-%d", s.lease, w.groupSeq.Add(1))
	g, err := w.q.Claim(cctx, s.lease, w.cfg.ID, group, ready, now, func(t queue.Task) time.Time {
		p := w.policyOf(t.Batch)
		return now.Add(maxWait(p) + p.Timeout())
	})
	if err != nil {
		if isLeaseNotFound(err) {
			c.err = errLeaseGone
			return c
		}
		// Unknown outcome: the claim may have committed. Re-read it rather
		// than leave a group nobody runs until the leader revokes it.
		// Even when stopping: an adopted group is then released properly.
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), w.limit.timeout(w.cfg.CallTimeout))
		adopted, aerr := w.q.Adopt(actx, group)
		acancel()
		if aerr != nil || adopted == nil {
			c.err = err
			return c
		}
		w.log.Warn().Err(err).Str("group", group).Msg("claim outcome was unknown; it had committed, running it")
		g = adopted
	}
	c.group = g
	return c
}

// settle takes a claim's answer on the claim loop: what it did not take
// is no longer held, and what it took starts as slots free. (The loop lets
// the cursor forget the claim's keys.)
func (s *run) settle(taskCtx context.Context, c claimed, tasks *sync.WaitGroup) {
	w := s.w
	took := 0
	if c.group != nil {
		took = len(c.group.Running.Tasks)
	}
	s.held.Add(int64(took - len(c.ready)))
	switch {
	case c.err == nil:
		s.claimErrs.ok()
	case !errors.Is(c.err, errLeaseGone):
		s.claimErrs.fail(c.err, nil)
	}
	if c.group == nil {
		return
	}
	g := c.group
	w.log.Debug().Str("group", g.ID).Int("tasks", took).Int("listed", len(c.ready)).Int64("held", s.held.Load()).Int("running", len(s.slots)).Msg("claimed")
	w.claimed.Add(int64(took))
	w.m.TasksClaimed.Add(float64(took))
	s.mu.Lock()
	s.groups[g] = struct{}{}
	s.mu.Unlock()
	for i := range g.Running.Tasks {
		tasks.Go(func() { s.start(taskCtx, g, i) })
	}
}

// start waits for a slot and runs one claimed task. A drain lets claimed
// tasks start as slots free, as it lets running ones finish; a task still
// waiting when the drain times out or the session is lost (taskCtx ends)
// never starts, and its group is released. A task that waits longer than
// its batch allows (maxWait: the claim-ahead guessed wrong, say a batch of
// slow checks after fast ones) is given back: committed as due again at
// once, on the same attempt, for whichever worker has a slot.
func (s *run) start(taskCtx context.Context, g *queue.Group, i int) {
	w := s.w
	wait := time.NewTimer(maxWait(w.policyOf(g.Running.Tasks[i].Batch)) - time.Since(g.Running.ClaimedAt))
	defer wait.Stop()
	select {
	case s.slots <- struct{}{}:
	case <-taskCtx.Done():
		s.held.Add(-1)
		return
	case <-wait.C:
		s.held.Add(-1)
		t := g.Running.Tasks[i]
		t.NotBefore = time.Now().UTC()
		w.m.TasksGivenBack.Inc()
		s.outcomes <- queue.Outcome{Group: g, Index: i, Retry: &t, GivenBack: true}
		return
	}
	if taskCtx.Err() != nil {
		<-s.slots
		s.held.Add(-1)
		return
	}
	w.m.RunningChecks.Inc()
	start := time.Now()
	defer func() {
		w.m.RunningChecks.Dec()
		s.observeCheck(time.Since(start))
		<-s.slots
		s.held.Add(-1)
		select {
		case s.freed <- struct{}{}:
		default:
		}
	}()
	if o, ok := s.runTask(taskCtx, g, i); ok {
		s.outcomes <- o
	}
}

// observeCheck adds a check's duration to the average the claim-ahead is
// sized by. It follows a slower check at once halfway, a faster one by an
// eighth: holding too many tasks costs more than holding too few.
func (s *run) observeCheck(d time.Duration) {
	took, old := max(1, d.Nanoseconds()), s.checkNanos.Load()
	switch {
	case old == 0:
		s.checkNanos.Store(took)
	case took > old:
		s.checkNanos.Store(old + (took-old)/2)
	default:
		s.checkNanos.Store((7*old + took) / 8)
	}
}

// maxWait is how long a claimed task may wait for a slot: a quarter of its
// timeout, at most 15s. Its claim's deadline allows for it.
func maxWait(p queue.Policy) time.Duration {
	return min(p.Timeout()/4, 15*time.Second)
}

var errLeaseGone = errors.New("worker: lease lost")
