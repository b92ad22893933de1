package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ResultTally follows one batch's results as they are committed, so that
// the leader learns of the last one at once and writes the summary without
// reading every result again (Tally, which costs as much as the batch is
// large, at the very end of it). It lists the results at one revision,
// then watches them from the next; when the watch breaks it lists again.
//
// The tally is exact at a revision: the list's, then that of each event it
// applied (etcd delivers a revision's events together and in order), or
// the one a progress notification reports. It holds counts, not the
// results: a result's first write (etcd's create event) adds to its
// status, and a rewrite or a delete (a retry round's) moves the count of
// the status the watch's previous value held. A million-host batch costs
// the leader a few counters, not a map of a million task IDs. A rewrite
// or delete whose previous value etcd did not send (it was compacted
// away meanwhile) cannot be counted exactly: the tally lists again. Current asks etcd for a
// revision no older than the call and waits until the tally has caught up
// with it, so what it returns is what Tally would have read.
type ResultTally struct {
	q        *Queue
	prefix   string
	onChange func(results int)

	mu     sync.Mutex
	counts Counts          // how many results hold each status
	total  int             // results in all
	failed int             // results whose status is Failed
	rev    int64           // the counts are exact at this revision; 0 while listing
	wctx   context.Context // the watch's context, which names its stream for progress requests
	moved  chan struct{}   // closed and replaced whenever rev advances
}

// FollowResults returns a tally of batch's results; Run keeps it current.
// onChange, if set, is called on Run's goroutine with the number of
// results after each change.
func (q *Queue) FollowResults(batch string, onChange func(results int)) *ResultTally {
	return &ResultTally{q: q, prefix: q.keys.BatchResults(batch), onChange: onChange, moved: make(chan struct{})}
}

// Run lists and watches the results until ctx ends.
func (t *ResultTally) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	down := false
	for ctx.Err() == nil {
		listed, err := t.follow(ctx)
		if listed {
			backoff, down = 100*time.Millisecond, false
		}
		if ctx.Err() != nil {
			break
		}
		t.q.WatchRestarted("results", err, down)
		down = true
		t.mu.Lock()
		t.rev, t.wctx = 0, nil
		t.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// errNoPrevious is a rewritten or deleted result whose previous value the
// watch did not carry: the tally cannot tell which count to move.
var errNoPrevious = fmt.Errorf("queue: a result changed and etcd sent no previous value: %w", rpctypes.ErrCompacted)

// follow lists the results and applies the watch's events until it breaks.
// It reports whether the list succeeded, and why it ended.
func (t *ResultTally) follow(ctx context.Context) (listed bool, err error) {
	counts, total, failed := Counts{}, 0, 0
	rev, err := t.q.rangeSplit(ctx, t.prefix, func(kv *mvccpb.KeyValue) error {
		if _, st, ok := t.q.resultStatus(kv); ok {
			counts[st]++
			total++
			if st.Failed() {
				failed++
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("%w: %w", errListFailed, err)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	t.mu.Lock()
	t.counts, t.total, t.failed, t.wctx = counts, total, failed, wctx
	t.advance(rev)
	t.mu.Unlock()
	t.changed(total)
	// etcd reads a previous value only for an event that is not a
	// create: a result's first write costs the watch nothing more.
	for resp := range t.q.cli.Watch(wctx, t.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV()) {
		if err := resp.Err(); err != nil {
			return true, err // compacted, or the etcd leader was lost: list again
		}
		t.mu.Lock()
		for _, ev := range resp.Events {
			if err := t.apply(ev); err != nil {
				// The events before it in this response are applied: the
				// counts are exact at no revision until listed again.
				t.rev, t.wctx = 0, nil
				t.mu.Unlock()
				return true, err
			}
			t.advance(ev.Kv.ModRevision)
		}
		if resp.IsProgressNotify() {
			// Sent only once every event up to this revision was.
			t.advance(resp.Header.Revision)
		}
		n := t.total
		t.mu.Unlock()
		if len(resp.Events) > 0 {
			t.changed(n)
		}
	}
	return true, ErrWatchClosed
}

// apply moves the counts by one event. t.mu is held.
func (t *ResultTally) apply(ev *clientv3.Event) error {
	if _, _, err := t.q.keys.ParseResult(string(ev.Kv.Key)); err != nil {
		return nil // not a result's key: never counted
	}
	if !ev.IsCreate() {
		if ev.PrevKv == nil {
			return errNoPrevious
		}
		t.add(valueStatus(ev.PrevKv.Value), -1)
	}
	if ev.Type == mvccpb.PUT {
		t.add(valueStatus(ev.Kv.Value), 1)
	}
	return nil
}

// add counts n more results in status st. t.mu is held.
func (t *ResultTally) add(st Status, n int) {
	t.counts[st] += n
	t.total += n
	if st.Failed() {
		t.failed += n
	}
}

// advance records that the tally is exact at rev. t.mu is held.
func (t *ResultTally) advance(rev int64) {
	if rev > t.rev {
		t.rev = rev
		close(t.moved)
		t.moved = make(chan struct{})
	}
}

func (t *ResultTally) changed(n int) {
	if t.onChange != nil {
		t.onChange(n)
	}
}

// Count returns how many results the tally holds, and false while it is
// not following (listing, or the watch broke).
func (t *ResultTally) Count() (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.rev != 0
}

// Failed returns how many results the tally holds whose status counts
// against --max-failures (Status.Failed) and how many it holds in all, and
// false while it is not following. The counts are as of the last event the
// tally applied: they may lag etcd by the watch's delay, never run ahead.
func (t *ResultTally) Failed() (failed, results int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed, t.total, t.rev != 0
}

// Counts returns how many results the tally holds in each status, and
// false while it is not following. Like Failed, it may lag etcd by the
// watch's delay.
func (t *ResultTally) Counts() (Counts, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nonZero(), t.rev != 0
}

// nonZero copies the counts, leaving out statuses none hold. t.mu is held.
func (t *ResultTally) nonZero() Counts {
	out := make(Counts, len(t.counts))
	for st, n := range t.counts {
		if n > 0 {
			out[st] = n
		}
	}
	return out
}

// Current returns how many results stand in each status as of a revision
// no older than the call: it reads etcd's current revision (a linearizable read),
// then waits until the tally has caught up with it, asking etcd for a
// progress notification when no event will say so. It gives up when ctx
// ends; the caller then reads the results itself (Tally).
func (t *ResultTally) Current(ctx context.Context) (Counts, error) {
	resp, err := t.q.cli.Get(ctx, t.prefix) // one key: only its revision is wanted
	if err != nil {
		return nil, err
	}
	want := resp.Header.Revision
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	for asked := false; ; {
		t.mu.Lock()
		rev, wctx, moved := t.rev, t.wctx, t.moved
		var out Counts
		if rev >= want {
			out = t.nonZero()
		}
		t.mu.Unlock()
		if out != nil {
			return out, nil
		}
		if !asked && wctx != nil {
			// Answered once every event up to now was sent. etcd drops
			// the request while any watch sharing the stream is catching
			// up, so the retry tick asks again.
			if err := t.q.cli.RequestProgress(wctx); err != nil && ctx.Err() == nil && wctx.Err() == nil {
				return nil, err
			}
			asked = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-moved:
		case <-retry.C:
			asked = false
		}
	}
}

// resultStatus is the task and status a result key holds, as Tally counts
// it (valueStatus), and false for a key that is no result's.
func (q *Queue) resultStatus(kv *mvccpb.KeyValue) (task string, st Status, ok bool) {
	_, task, err := q.keys.ParseResult(string(kv.Key))
	if err != nil {
		return "", "", false
	}
	return task, valueStatus(kv.Value), true
}

// valueStatus is the status a result's value holds: a value that does
// not decode (not JSON, a newer schema version, a status that is not a
// string, or not a final status) ends its task as an error, as Results
// shows it. Only the version and status are decoded: the leader follows
// every result of a batch, and decoding each whole was most of what
// following cost.
func valueStatus(value []byte) Status {
	var r struct {
		V      int    `json:"v"`
		Status Status `json:"status"`
	}
	if err := json.Unmarshal(value, &r); err != nil || checkVersion(r.V) != nil || !r.Status.Final() {
		return StatusError
	}
	return r.Status
}
