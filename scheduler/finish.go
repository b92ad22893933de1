package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/patrol-dev/patrol/queue"
)

// publishEvery is the least time between two publications of a batch's
// result counts (queue.Queue.PublishCounts).
const publishEvery = time.Second

// finishDuty ends batches: it stops a batch's pending tasks on a cancel or
// once --max-failures is exceeded, writes the summary as soon as every
// host has a result, and publishes each batch's result counts for
// `status`, `watch` and `submit --wait`. It counts from the batches'
// result tallies (registry), so a pass costs nothing per host.
type finishDuty struct {
	l    *leader
	wake <-chan struct{}

	mu       sync.Mutex
	stopping map[string]bool // batches whose stop runs
	stops    sync.WaitGroup

	// counted is how many results a batch had when its failures were last
	// checked; published what was last published of it, and when.
	counted   map[string]int
	published map[string]publication
}

type publication struct {
	counts string
	at     time.Time
}

func newFinishDuty(l *leader) *finishDuty {
	return &finishDuty{l: l, wake: l.batches.subscribe(), stopping: map[string]bool{},
		counted: map[string]int{}, published: map[string]publication{}}
}

func (d *finishDuty) run(ctx context.Context) {
	defer d.stops.Wait()
	every(ctx, publishEvery/2, d.wake, func() { d.pass(ctx) })
}

func (d *finishDuty) pass(ctx context.Context) {
	batches := d.l.batches.snapshot()
	// Stops first: they are decided in memory, and a batch with
	// --max-failures must not wait for another batch's summary to be
	// written before its hosts stop being released.
	for _, b := range batches {
		if !b.loaded || b.results == nil || b.finished {
			continue
		}
		if b.cancel && !b.stopped {
			d.stop(ctx, b.spec, queue.StatusCancelled)
		}
		if n, ok := b.results.Count(); ok {
			d.checkFailures(ctx, b, n)
		}
	}
	seen := map[string]bool{}
	for _, b := range batches {
		if ctx.Err() != nil {
			return
		}
		id := b.spec.ID
		seen[id] = true
		if !b.loaded || b.results == nil || b.finished {
			continue
		}
		n, ok := b.results.Count()
		if !ok {
			continue // the tally is listing: the next pass
		}
		var err error
		if n >= b.spec.Hosts && b.sharded && b.retried {
			err = d.finish(ctx, b)
		} else {
			err = d.publish(ctx, b)
		}
		if !d.l.check(err, "batch step", batchField(id)) && ctx.Err() != nil {
			return
		}
	}
	for id := range d.published {
		if !seen[id] {
			delete(d.published, id)
			delete(d.counted, id)
		}
	}
}

// stop ends a batch's not-yet-started tasks with why, on a goroutine of
// its own: ending a large batch's pending tasks takes many transactions.
func (d *finishDuty) stop(ctx context.Context, spec queue.BatchSpec, why queue.Status) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping[spec.ID] {
		return
	}
	d.stopping[spec.ID] = true
	d.l.batches.update(spec.ID, func(b *batch) { b.stopping = true })
	d.stops.Go(func() {
		defer func() {
			d.mu.Lock()
			delete(d.stopping, spec.ID)
			d.mu.Unlock()
		}()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		q := d.l.s.q
		err := q.StopBatch(cctx, d.l.fence, spec.ID, why)
		n := 0
		if err == nil {
			n, err = q.StopPending(cctx, d.l.fence, spec, why)
		}
		if !d.l.check(err, "stop batch", batchField(spec.ID)) {
			d.l.batches.update(spec.ID, func(b *batch) { b.stopping = false })
			return
		}
		d.l.batches.update(spec.ID, func(b *batch) { b.stopped = true })
		d.l.batches.changed()
		d.l.log.Info().Str("batch_id", spec.ID).Str("status", string(why)).Int("tasks", n).Msg("batch stopped early")
	})
}

// checkFailures stops a batch with --max-failures once it is exceeded,
// counting in the batch's result tally when results have arrived since it
// last counted.
func (d *finishDuty) checkFailures(ctx context.Context, b batch, results int) {
	id := b.spec.ID
	if b.spec.Policy.MaxFailures == "" || b.stopped || b.stopping || results == d.counted[id] {
		return
	}
	limit, err := queue.ParseMaxFailures(b.spec.Policy.MaxFailures, b.spec.Hosts)
	if err != nil {
		d.l.log.Warn().Err(err).Str("batch_id", id).Msg("--max-failures of this batch does not parse: it is not stopped early")
		return
	}
	failed, counted, ok := b.results.Failed()
	if !ok {
		return
	}
	d.counted[id] = counted
	if failed <= limit {
		return
	}
	d.l.log.Warn().Str("batch_id", id).Int("failed", failed).Int("max_failures", limit).Msg("too many failures: skipping the hosts not yet started")
	d.stop(ctx, b.spec, queue.StatusSkipped)
}

// publish writes a batch's result counts when they changed, at most once
// per publishEvery.
func (d *finishDuty) publish(ctx context.Context, b batch) error {
	id := b.spec.ID
	counts, ok := b.results.Counts()
	if !ok {
		return nil
	}
	key := fmt.Sprint(counts)
	last := d.published[id]
	if key == last.counts || time.Since(last.at) < publishEvery {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	now := time.Now()
	if err := d.l.s.q.PublishCounts(cctx, d.l.fence, id, counts, now); err != nil {
		return err
	}
	d.published[id] = publication{counts: key, at: now}
	return nil
}

// finish writes the batch summary once every host has a result.
func (d *finishDuty) finish(ctx context.Context, b batch) error {
	spec := b.spec
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	counts, err := d.counts(cctx, b)
	if err != nil || counts.Total() < spec.Hosts {
		return err
	}
	sum := queue.SummaryOfCounts(spec.Hosts, counts, time.Now())
	if err := d.l.s.q.Finish(cctx, d.l.fence, spec.ID, sum); err != nil {
		return err
	}
	d.l.batches.update(spec.ID, func(b *batch) { b.finished = true })
	d.l.s.m.BatchesFinished.Inc()
	ev := d.l.log.Info().Str("batch_id", spec.ID).Int("hosts", spec.Hosts)
	for st, n := range sum.Counts {
		ev = ev.Int(string(st), n)
	}
	ev.Msg("batch finished")
	return nil
}

// counts returns how many results stand in each status: from the batch's
// result tally once it has caught up with etcd, which is immediate at the
// end of a batch; otherwise by reading every result.
func (d *finishDuty) counts(ctx context.Context, b batch) (queue.Counts, error) {
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	counts, err := b.results.Current(tctx)
	cancel()
	if err == nil {
		return counts, nil
	}
	d.l.log.Debug().Err(err).Str("batch_id", b.spec.ID).Msg("result tally did not catch up; reading every result")
	tally, err := d.l.s.q.Tally(ctx, b.spec.ID)
	return queue.CountsOf(tally), err
}
