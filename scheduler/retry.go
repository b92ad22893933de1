package scheduler

import (
	"context"
	"time"
)

// retryDuty carries out a batch's pending retry request (`patrol retry`)
// once per term: queue.Queue.RunRetry requeues the hosts it names. A batch
// is not finished while its request is pending.
type retryDuty struct {
	l    *leader
	wake <-chan struct{}
}

func newRetryDuty(l *leader) *retryDuty { return &retryDuty{l: l, wake: l.batches.subscribe()} }

func (d *retryDuty) run(ctx context.Context) {
	every(ctx, time.Second, d.wake, func() {
		for _, b := range d.l.batches.snapshot() {
			if ctx.Err() != nil {
				return
			}
			if b.loaded && !b.retried && !d.l.check(d.retry(ctx, b), "retry round", batchField(b.spec.ID)) {
				return
			}
		}
	})
}

func (d *retryDuty) retry(ctx context.Context, b batch) error {
	q, id := d.l.s.q, b.spec.ID
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	req, err := q.PendingRetry(cctx, id)
	cancel()
	if err != nil {
		return err
	}
	if req != nil {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Minute)
		n, err := q.RunRetry(rctx, d.l.fence, b.spec, *req)
		rcancel()
		if err != nil {
			return err
		}
		d.l.log.Info().Str("batch_id", id).Int("round", req.Round).Int("tasks", n).Msg("retry round queued")
	}
	d.l.batches.update(id, func(b *batch) {
		b.retried = true
		if req != nil {
			b.rounds++
		}
	})
	d.l.batches.changed()
	return nil
}
