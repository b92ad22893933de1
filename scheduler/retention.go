package scheduler

import (
	"context"
	"time"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// Lost-task checks: a batch is looked at only once its results have not
// moved for stallAfter, and then at most once per lostEvery.
const (
	stallAfter = time.Minute
	lostEvery  = 5 * time.Minute
)

// retentionDuty runs once a minute (and at the start of the term): it
// purges batches finished longer ago than the retention, deletes the
// inventory chunks of submits that died before committing, and ends dead
// the tasks of stalled batches that are nowhere.
type retentionDuty struct {
	l        *leader
	lostSeen map[string]time.Time // when each batch was last checked for lost tasks
}

func newRetentionDuty(l *leader) *retentionDuty {
	return &retentionDuty{l: l, lostSeen: map[string]time.Time{}}
}

func (d *retentionDuty) run(ctx context.Context) {
	every(ctx, time.Minute, nil, func() {
		d.purge(ctx)
		d.endLost(ctx)
	})
}

// purge deletes batches finished longer ago than the retention.
func (d *retentionDuty) purge(ctx context.Context) {
	l := d.l
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
	n, err := l.s.q.CleanUploads(cctx, l.fence, time.Now().Add(-queue.AbandonedUploads))
	if l.check(err, "upload cleanup", noFields) && n > 0 {
		l.log.Info().Int("uploads", n).Msg("deleted inventory chunks of submits that died before committing")
	}
}

// endLost ends dead the tasks of active batches that are nowhere (their
// records were malformed and quarantined, or deleted by hand), so that the
// batch can finish. Finding them reads the whole batch, so only a batch
// whose results stopped moving is looked at.
func (d *retentionDuty) endLost(ctx context.Context) {
	l := d.l
	now := time.Now()
	seen := map[string]bool{}
	for _, b := range l.batches.snapshot() {
		id := b.spec.ID
		seen[id] = true
		if !b.sharded || now.Sub(b.moved) < stallAfter || now.Sub(d.lostSeen[id]) < lostEvery {
			continue
		}
		d.lostSeen[id] = now
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		lost, err := l.s.q.Lost(cctx, b.spec)
		if err == nil && len(lost) > 0 {
			var n int
			n, err = l.s.q.EndLost(cctx, l.fence, id, lost, "task record lost: it was malformed and moved under "+
				l.s.q.Keys().Quarantine("")+", or deleted by hand")
			if err == nil {
				l.s.m.DeadLetters(metrics.DeadLost, n)
				l.log.Warn().Str("batch_id", id).Int("tasks", n).Msg("ended lost tasks dead")
			}
		}
		cancel()
		if !l.check(err, "lost-task check", noFields) {
			return
		}
	}
	for id := range d.lostSeen {
		if !seen[id] {
			delete(d.lostSeen, id)
		}
	}
}
