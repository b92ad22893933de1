package worker

import (
	"context"
	"time"

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
	// now rather than when the lease expires.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.limit.timeout(w.cfg.CallTimeout))
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
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

func (s *run) commit(ctx context.Context, outs []queue.Outcome) {
	w := s.w
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*w.limit.timeout(w.cfg.CallTimeout))
	defer cancel()
	start := time.Now()
	rejected, err := w.q.Commit(cctx, outs)
	if err == nil {
		w.limit.observe(time.Since(start))
	}
	if err != nil {
		// The outcome is unknown: if it did not land, the claims go with
		// the lease and the scheduler requeues.
		w.log.Warn().Err(err).Int("outcomes", len(outs)).Msg("commit failed")
		return
	}
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
			w.countOutcome(cctx, o)
		}
	}
	s.mu.Lock()
	for _, o := range outs {
		if o.Group.Finished() {
			delete(s.groups, o.Group)
		}
	}
	s.mu.Unlock()
}
