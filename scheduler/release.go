package scheduler

import (
	"context"
	"time"
)

// releaseDuty keeps each --parallel batch's tasks in flight (claimable,
// running or waiting out a backoff) at its fleet-wide cap, moving held
// tasks to the ready queues as results arrive. It counts what is in
// flight as hosts - held - results: held from one count per term (and per
// retry round), less what it released since; results from the batch's
// tally, which may lag etcd, so that the count errs high and the cap is
// never exceeded.
type releaseDuty struct {
	l    *leader
	wake <-chan struct{}
	held map[string]heldCount
}

// heldCount is how many tasks of a batch are held, as of a retry round.
type heldCount struct {
	n      int
	rounds int
}

func newReleaseDuty(l *leader) *releaseDuty {
	return &releaseDuty{l: l, wake: l.batches.subscribe(), held: map[string]heldCount{}}
}

func (d *releaseDuty) run(ctx context.Context) {
	every(ctx, 100*time.Millisecond, d.wake, func() {
		seen := map[string]bool{}
		for _, b := range d.l.batches.snapshot() {
			if ctx.Err() != nil {
				return
			}
			if b.spec.Policy.Parallel <= 0 || !b.sharded || b.stopped || b.stopping || b.results == nil {
				continue
			}
			seen[b.spec.ID] = true
			if !d.l.check(d.release(ctx, b), "release held tasks", batchField(b.spec.ID)) && ctx.Err() != nil {
				return
			}
		}
		for id := range d.held {
			if !seen[id] {
				delete(d.held, id)
			}
		}
	})
}

func (d *releaseDuty) release(ctx context.Context, b batch) error {
	q, id := d.l.s.q, b.spec.ID
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	h, ok := d.held[id]
	if !ok || h.rounds != b.rounds {
		n, err := q.HeldCount(cctx, id)
		if err != nil {
			return err
		}
		h = heldCount{n: n, rounds: b.rounds}
		d.held[id] = h
	}
	if h.n == 0 {
		return nil
	}
	results, ok := b.results.Count()
	if !ok {
		return nil
	}
	inflight := b.spec.Hosts - h.n - results
	moved, err := q.ReleaseHeld(cctx, d.l.fence, b.spec, b.spec.Policy.Parallel-inflight)
	if err != nil {
		return err
	}
	h.n -= moved
	d.held[id] = h
	return nil
}
