package worker

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/queue"
)

// Commit batching: a commit goes out at once when none is in flight, with
// whatever outcomes have arrived; beside others in flight only once
// commitBatch outcomes wait, so that a worker next to etcd still commits in
// large batches and a far one keeps several in flight. maxCommitOutcomes
// bounds one commit (queue.Commit splits it into transactions that fit).
const (
	commitBatch       = 64
	maxCommitOutcomes = 256
)

// commitLoop commits outcomes as they arrive, keeping up to the request
// limit of commits in flight. A group is in at most one commit at a time:
// each commit rewrites the group's done set whole. When outcomes closes it
// commits the rest, waits for every commit, and releases every group with
// unfinished tasks.
func (s *run) commitLoop(ctx context.Context) {
	w := s.w
	var pending []queue.Outcome
	busy := map[*queue.Group]bool{}
	done := make(chan []queue.Outcome, MaxRequestLimit)
	inflight := 0
	in := s.outcomes
	for in != nil || len(pending) > 0 || inflight > 0 {
		for len(pending) > 0 && inflight < w.limit.get() && (inflight == 0 || len(pending) >= commitBatch || in == nil) {
			var batch []queue.Outcome
			batch, pending = takeOutcomes(pending, busy, maxCommitOutcomes)
			if len(batch) == 0 {
				break // every waiting outcome's group is in a commit in flight
			}
			inflight++
			go func() {
				s.commit(ctx, batch)
				done <- batch
			}()
		}
		select {
		case o, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			pending = append(pending, o)
		case batch := <-done:
			inflight--
			for _, o := range batch {
				delete(busy, o.Group)
			}
		}
	}
	// Give back what was claimed and not finished, so that it is requeued
	// now rather than when the lease expires. A commit whose answer was
	// lost may have landed: read each group's done set first (Reconcile),
	// so that the release does not write back a set that misses it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.limit.timeout(w.cfg.CallTimeout))
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	var open []queue.Outcome
	for g := range s.groups {
		if !g.Finished() {
			open = append(open, queue.Outcome{Group: g})
		}
	}
	if len(open) > 0 {
		if _, _, _, err := w.q.Reconcile(cctx, open); err != nil {
			w.log.Warn().Err(err).Int("groups", len(open)).Msg("could not re-read the groups to release: their claims go with the lease, and the leader requeues them")
			return
		}
	}
	for g := range s.groups {
		if !g.Finished() {
			if ok, err := w.q.Release(cctx, g); err == nil && ok {
				w.released.Add(1)
				w.m.GroupsReleased.Inc()
			}
		}
		delete(s.groups, g)
	}
}

// takeOutcomes moves up to n outcomes of groups not in busy from pending
// into a batch, marks their groups busy, and returns the batch and what is
// left, in order.
func takeOutcomes(pending []queue.Outcome, busy map[*queue.Group]bool, n int) (batch, left []queue.Outcome) {
	mine := map[*queue.Group]bool{}
	left = pending[:0:0]
	for _, o := range pending {
		switch {
		case len(batch) < n && (mine[o.Group] || !busy[o.Group]):
			mine[o.Group] = true
			batch = append(batch, o)
		default:
			left = append(left, o)
		}
	}
	for g := range mine {
		busy[g] = true
	}
	return batch, left
}

// commit commits outs, the committer's batch. A commit that fails may
// still have landed (a deadline, a lost connection, an etcd leader
// change): the worker re-reads what landed (queue.Reconcile) and commits
// the rest again under the same fence, backing off, for as long as its
// session lives and for up to a lease TTL. Past that it releases the
// groups still pending, so that the leader requeues them at once rather
// than when their claims overrun; a host is never left running because a
// commit failed.
func (s *run) commit(ctx context.Context, outs []queue.Outcome) {
	w := s.w
	// try commits outs once; the fence's rejections are counted and
	// logged as the commit's answer.
	try := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*w.limit.timeout(w.cfg.CallTimeout))
		defer cancel()
		start := time.Now()
		rejected, err := w.q.Commit(cctx, outs)
		if err == nil {
			w.limit.observe(time.Since(start))
			s.committed(ctx, outs, rejected)
			s.commitErrs.ok()
		}
		return err
	}
	giveUp := time.Now().Add(w.cfg.LeaseTTL)
	backoff := 100 * time.Millisecond
	for {
		err := try()
		if err == nil {
			return
		}
		// Re-read what landed and commit the rest again.
		s.commitErrs.fail(err, func(e *zerolog.Event) *zerolog.Event { return e.Int("outcomes", len(outs)) })
		w.m.CommitRetries.Inc()
		select {
		case <-s.lost:
			// The claims went with the lease: one last try, which the fence
			// rejects (and which says so) unless the last one landed.
			if err := try(); err != nil {
				w.log.Warn().Err(err).Int("outcomes", len(outs)).Msg("session lost with outcomes uncommitted: their claims went with the lease and the leader requeues them")
			}
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), w.limit.timeout(w.cfg.CallTimeout))
		landed, pending, gone, rerr := w.q.Reconcile(rctx, outs)
		rcancel()
		if rerr == nil {
			s.committed(ctx, landed, nil)
			if len(gone) > 0 {
				// The claim went: with the outcomes (a commit that finished
				// the group), or without (the fence rejects them, as it would
				// have rejected the commit).
				lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), w.limit.timeout(w.cfg.CallTimeout))
				done, rejected, lerr := w.q.Landed(lctx, gone, w.cfg.ID)
				lcancel()
				if lerr == nil {
					s.committed(ctx, append(done, rejected...), rejected)
				} else {
					w.log.Warn().Err(lerr).Int("outcomes", len(gone)).Msg("after a failed commit, the claim of some groups is gone: either the commit finished them, or the leader recovers them")
				}
				s.mu.Lock()
				for _, o := range gone {
					delete(s.groups, o.Group)
				}
				s.mu.Unlock()
			}
			outs = pending
			if len(outs) == 0 {
				return
			}
		}
		if time.Now().After(giveUp) {
			s.release(ctx, outs)
			return
		}
	}
}

// committed counts and logs outcomes that landed, less those rejected by
// the fence, and forgets finished groups.
func (s *run) committed(ctx context.Context, outs, rejected []queue.Outcome) {
	w := s.w
	w.committed.Add(int64(len(outs) - len(rejected)))
	zombie := make(map[*queue.Group]map[int]bool, len(rejected))
	for _, o := range rejected {
		w.rejected.Add(1)
		w.m.ZombiesRejected.Inc()
		if zombie[o.Group] == nil {
			zombie[o.Group] = map[int]bool{}
		}
		zombie[o.Group][o.Index] = true
		t := o.Group.Running.Tasks[o.Index]
		taskFields(w.log.Warn(), t).
			Str("group", o.Group.ID).Int64("claim_rev", o.Group.ClaimRev).
			Msg("zombie completion rejected: the claim is no longer ours")
	}
	for _, o := range outs {
		if !zombie[o.Group][o.Index] {
			w.countOutcome(ctx, o)
		}
	}
	s.forget(outs)
}

// forget drops the groups of outs that are finished from those the
// session releases at its end.
func (s *run) forget(outs []queue.Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range outs {
		if o.Group.Finished() {
			delete(s.groups, o.Group)
		}
	}
}

// release gives back the groups of outcomes that could not be committed
// within a lease TTL, so that the leader requeues them at once.
func (s *run) release(ctx context.Context, outs []queue.Outcome) {
	w := s.w
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.limit.timeout(w.cfg.CallTimeout))
	defer cancel()
	seen := map[*queue.Group]bool{}
	for _, o := range outs {
		g := o.Group
		if seen[g] {
			continue
		}
		seen[g] = true
		ok, err := w.q.Release(cctx, g)
		switch {
		case err != nil:
			w.log.Warn().Err(err).Str("group", g.ID).Msg("could not commit nor release a group: the leader requeues it when its claim overruns or the lease ends")
		case ok:
			w.released.Add(1)
			w.m.GroupsReleased.Inc()
			w.log.Warn().Str("group", g.ID).Msg("could not commit a group's outcomes within a lease TTL: released it for the leader to requeue")
		}
		s.mu.Lock()
		delete(s.groups, g)
		s.mu.Unlock()
	}
}
