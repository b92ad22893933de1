package queue

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Observer is told about every etcd transaction the queue runs: which
// Patrol operation it belongs to, how long it took and how it failed. It is
// how metrics see etcd without the queue knowing about Prometheus.
// ObserveTxn must be safe for concurrent use and must not block.
type Observer interface {
	ObserveTxn(op string, took time.Duration, err error)
}

// WatchObserver is an Observer that is also told each time one of the
// queue's watches ended and had to be started again, with why: "compacted"
// (its revision was compacted away), "no_leader" (the member it used lost
// the etcd leader), "closed" (the connection broke or etcd cancelled it),
// "error" (any other), "list_failed" (the re-list after it failed too).
type WatchObserver interface {
	WatchRestarted(watch, reason string)
}

// WithLogger returns a Queue over the same client and prefix that logs
// what its watches go through there (a restart and its reason, once per
// outage; the watch working again).
func (q *Queue) WithLogger(l zerolog.Logger) *Queue {
	c := *q
	c.log = l
	return &c
}

// WatchRestarted records that the watch called watch ended with err and
// is being started again: it counts it (a WatchObserver's
// WatchRestarted) and logs it. down says whether the watch was already
// restarting (an outage goes on): then it is counted but not logged again.
// It returns the reason.
func (q *Queue) WatchRestarted(watch string, err error, down bool) string {
	reason := watchReason(err)
	if o, ok := q.obs.(WatchObserver); ok {
		o.WatchRestarted(watch, reason)
	}
	if !down {
		q.log.Warn().Str("watch", watch).Str("reason", reason).Err(err).Msg("watch ended: listing again and watching from there")
	}
	return reason
}

// WatchResumed logs that a watch that had been restarting works again.
func (q *Queue) WatchResumed(watch string, since time.Time) {
	q.log.Info().Str("watch", watch).Dur("down_for", time.Since(since)).Msg("watch working again")
}

// watchReason sorts why a watch ended.
func watchReason(err error) string {
	switch {
	case errors.Is(err, rpctypes.ErrCompacted), errors.Is(err, rpctypes.ErrGRPCCompacted):
		return "compacted"
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrGRPCNoLeader):
		return "no_leader"
	case errors.Is(err, ErrWatchClosed), errors.Is(err, context.Canceled):
		return "closed"
	case errors.Is(err, errListFailed):
		return "list_failed"
	default:
		return "error"
	}
}

// errListFailed wraps the error of a watch's re-list.
var errListFailed = errors.New("queue: re-list failed")

// WatchReasons are the reasons WatchRestarted gives, for metrics.
var WatchReasons = []string{"compacted", "no_leader", "closed", "error", "list_failed"}

// WithObserver returns a Queue over the same client and prefix that reports
// its transactions to o.
func (q *Queue) WithObserver(o Observer) *Queue {
	c := *q
	c.obs = o
	return &c
}

// observe reports a request other than a transaction, such as the claim
// path's ready listing, as op.
func (q *Queue) observe(op string, start time.Time, err error) {
	if q.obs != nil {
		q.obs.ObserveTxn(op, time.Since(start), err)
	}
}

// txn starts a transaction that counts as op for the Observer.
func (q *Queue) txn(ctx context.Context, op string) clientv3.Txn {
	t := q.cli.Txn(ctx)
	if q.obs == nil {
		return t
	}
	return observedTxn{Txn: t, obs: q.obs, op: op}
}

// observedTxn times Commit; If, Then and Else keep it wrapped.
type observedTxn struct {
	clientv3.Txn
	obs Observer
	op  string
}

func (t observedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.Txn = t.Txn.If(cs...)
	return t
}

func (t observedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Then(ops...)
	return t
}

func (t observedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}

func (t observedTxn) Commit() (*clientv3.TxnResponse, error) {
	start := time.Now()
	resp, err := t.Txn.Commit()
	t.obs.ObserveTxn(t.op, time.Since(start), err)
	return resp, err
}
