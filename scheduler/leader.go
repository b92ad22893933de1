package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/queue"
)

// callTimeout bounds each etcd call the leader makes.
const callTimeout = 10 * time.Second

// Recovery reasons, recorded in the lost attempt's history.
const (
	reasonLost    = "worker lost: its lease expired or it released the task"
	reasonRevoked = "claim revoked: the attempt overran its timeout"
)

// leader is one leadership term: what its duties share. Every etcd write
// goes through the queue with fence.
type leader struct {
	s       *Scheduler
	fence   queue.Fence
	log     zerolog.Logger
	fail    func(error) // ends the term on a lost fence
	batches *registry
}

// A duty is one part of the leader's work, with its own goroutine, cadence
// and state, started with the term and stopped with it (doc.go lists
// them). A duty that is slow (sharding a million hosts) delays no other.
type duty interface {
	run(ctx context.Context)
}

// lead does the leader's work until ctx ends or a fenced write is rejected.
func (s *Scheduler) lead(ctx context.Context, fence queue.Fence, log zerolog.Logger) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	l := &leader{s: s, fence: fence, log: log}
	l.fail = func(err error) {
		if errors.Is(err, queue.ErrNotLeader) {
			cancel(err)
		}
	}
	l.batches = newRegistry(l)
	// Each duty subscribes to the registry's changes as it is made, before
	// anything runs.
	duties := []duty{
		newShardDuty(l),
		newRetryDuty(l),
		newFinishDuty(l),
		newReleaseDuty(l),
		newPromoteDuty(l),
		newRecoveryDuty(l),
		newRetentionDuty(l),
		newAssignDuty(l),
	}
	var wg sync.WaitGroup
	q, r := s.q, l.batches
	wg.Go(func() { q.Sync(ctx, q.Keys().Active(), 30*time.Second, nil, r.onActive) })
	wg.Go(func() { q.Sync(ctx, q.Keys().Cancels(), 30*time.Second, nil, r.onCancel) })
	wg.Go(func() { r.load(ctx) })
	for _, d := range duties {
		wg.Go(func() { d.run(ctx) })
	}
	wg.Wait()
	if err := context.Cause(ctx); errors.Is(err, queue.ErrNotLeader) {
		return err
	}
	return nil
}

// check handles an error from a leader write: a lost fence ends the term;
// anything else is logged, and the duty tries again on its next pass.
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

func batchField(id string) func(*zerolog.Event) *zerolog.Event {
	return func(e *zerolog.Event) *zerolog.Event { return e.Str("batch_id", id) }
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// every calls f now and then each time wake fires or period passes, until
// ctx ends: the loop of most duties.
func every(ctx context.Context, period time.Duration, wake <-chan struct{}, f func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
		if ctx.Err() != nil {
			return
		}
	}
}
