package scheduler

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// recoveryDuty requeues the work of claims that are gone: it watches
// <prefix>/claims/ for deletions (a worker's lease expired, or it released
// a group) and recovers each group at once; every SweepInterval, and
// whenever that watch restarts, it sweeps every claimed group, recovering
// those whose claim vanished unseen (while no scheduler led, say) and
// revoking the claims of attempts that overran their timeout.
type recoveryDuty struct {
	l *leader

	mu      sync.Mutex
	revoked map[string]bool // groups this term revoked, for the reason recorded
}

func newRecoveryDuty(l *leader) *recoveryDuty {
	return &recoveryDuty{l: l, revoked: map[string]bool{}}
}

func (d *recoveryDuty) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { d.watchClaims(ctx) })
	// The first sweep catches up on what happened while no one led.
	every(ctx, d.l.s.cfg.SweepInterval, nil, func() { d.sweep(ctx) })
}

// policy returns a batch's retry policy, for recovery.
func (d *recoveryDuty) policy(ctx context.Context) func(string) (queue.Policy, error) {
	return func(id string) (queue.Policy, error) {
		if b, ok := d.l.batches.get(id); ok && b.loaded {
			return b.spec.Policy, nil
		}
		spec, err := d.l.s.q.LoadBatch(ctx, id)
		if errors.Is(err, queue.ErrBatchNotFound) {
			return queue.Policy{MaxAttempts: 1}, nil // purged: end what is left of it
		}
		return spec.Policy, err
	}
}

// recoverGroup requeues what a group whose claim vanished left unfinished.
// seen is when the leader saw the claim gone, for the requeue delay.
func (d *recoveryDuty) recoverGroup(ctx context.Context, group string, seen time.Time) error {
	l := d.l
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	d.mu.Lock()
	reason := reasonLost
	if d.revoked[group] {
		reason = reasonRevoked
		delete(d.revoked, group)
	}
	d.mu.Unlock()
	requeued, dead, err := l.s.q.RecoverGroup(cctx, l.fence, group, d.policy(cctx), reason, time.Now())
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
func (d *recoveryDuty) sweep(ctx context.Context) {
	l := d.l
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
			if !l.check(d.recoverGroup(ctx, g.ID, now), "recover", func(e *zerolog.Event) *zerolog.Event { return e.Str("group", g.ID) }) {
				return
			}
		case now.After(g.Deadline.Add(l.s.cfg.RevokeGrace)):
			d.mu.Lock()
			d.revoked[g.ID] = true
			d.mu.Unlock()
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

// watchClaims recovers groups as their claims vanish. When the watch
// breaks it sweeps, to catch up, and watches again.
func (d *recoveryDuty) watchClaims(ctx context.Context) {
	l := d.l
	keys := l.s.q.Keys()
	backoff := 100 * time.Millisecond
	down := false
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		err := error(queue.ErrWatchClosed)
		for resp := range l.s.q.Client().Watch(wctx, keys.Claims(), clientv3.WithPrefix()) {
			if err = resp.Err(); err != nil {
				break
			}
			err = queue.ErrWatchClosed
			backoff, down = 100*time.Millisecond, false
			seen := time.Now()
			for _, ev := range resp.Events {
				if ev.Type != mvccpb.DELETE {
					continue
				}
				group, perr := keys.ParseGroup(string(ev.Kv.Key))
				if perr != nil {
					continue
				}
				// A finished group's claim goes with its records; recovery
				// finds nothing to do.
				if rerr := d.recoverGroup(ctx, group, seen); !l.check(rerr, "recover", func(e *zerolog.Event) *zerolog.Event { return e.Str("group", group) }) &&
					errors.Is(rerr, queue.ErrNotLeader) {
					cancel()
					return
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.s.q.WatchRestarted("claims", err, down)
		down = true
		d.sweep(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
