package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one change under a synced prefix. Listed keys arrive as puts.
type Event struct {
	Delete bool
	KV     *mvccpb.KeyValue // the key; for a delete, only Key and ModRevision are set
	Prev   *mvccpb.KeyValue // the value before a delete or overwrite, when etcd still had it
}

// Sync keeps a consumer in step with every key under prefix: it lists the
// prefix at one revision (paged), reporting each key as a put, then watches
// from the next revision. When the watch ends (compaction, lost etcd leader,
// a broken connection) it calls reset and lists again, because a watch
// alone is eventually consistent and can miss history that was compacted.
// With resync > 0 it also re-lists that often. It returns when ctx ends.
//
// fn runs on Sync's goroutine, in revision order.
func (q *Queue) Sync(ctx context.Context, prefix string, resync time.Duration, reset func(), fn func(Event)) error {
	return q.sync(ctx, prefix, resync, reset, nil, fn, q.rangeAll)
}

// SyncListed is Sync for prefixes of very many keys (a batch's results):
// it lists them with rangeSplit, and calls listed, if set, each time a
// listing has been passed to fn whole (with the revision it was read at):
// from then until the next reset, what fn was given is exact at a revision.
func (q *Queue) SyncListed(ctx context.Context, prefix string, resync time.Duration, reset func(), listed func(rev int64), fn func(Event)) error {
	split := func(ctx context.Context, prefix string, fn func(*mvccpb.KeyValue) error) (int64, error) {
		return q.rangeSplit(ctx, prefix, fn)
	}
	return q.sync(ctx, prefix, resync, reset, listed, fn, split)
}

func (q *Queue) sync(ctx context.Context, prefix string, resync time.Duration, reset func(), listed func(rev int64), fn func(Event),
	list func(context.Context, string, func(*mvccpb.KeyValue) error) (int64, error)) error {
	name := q.keys.kind(prefix)
	backoff := 100 * time.Millisecond
	down, failing := false, false // restarting; and a re-list failed meanwhile
	var since time.Time
	for {
		if reset != nil {
			reset()
		}
		rev, err := list(ctx, prefix, func(kv *mvccpb.KeyValue) error {
			fn(Event{KV: kv})
			return nil
		})
		if err == nil {
			if failing {
				q.WatchResumed(name, since)
			}
			down, failing = false, false
			backoff = 100 * time.Millisecond
			if listed != nil {
				listed(rev)
			}
			err = q.watchFrom(ctx, prefix, rev+1, resync, fn)
		} else {
			failing = true
			err = fmt.Errorf("%w: %w", errListFailed, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if !down {
				since = time.Now()
			}
			q.WatchRestarted(name, err, down)
			down = true
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// ErrWatchClosed is why a watch whose channel closed without an error
// ended: the connection broke, or etcd cancelled it.
var ErrWatchClosed = errors.New("queue: watch closed")

// watchFrom watches prefix from rev until the watch ends or resync elapses.
// It returns nil when a re-list is due, an error when the watch failed.
func (q *Queue) watchFrom(ctx context.Context, prefix string, rev int64, resync time.Duration, fn func(Event)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	var tick <-chan time.Time
	if resync > 0 {
		t := time.NewTicker(resync)
		defer t.Stop()
		tick = t.C
	}
	wch := q.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithPrevKV())
	for {
		select {
		case <-tick:
			return nil
		case resp, ok := <-wch:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return ErrWatchClosed
			}
			if err := resp.Err(); err != nil {
				return err // includes ErrCompacted: the caller re-lists
			}
			for _, ev := range resp.Events {
				fn(Event{Delete: ev.Type == mvccpb.DELETE, KV: ev.Kv, Prev: ev.PrevKv})
			}
		}
	}
}
