package queue

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Observer is told about every etcd transaction the queue runs: which
// Patrol operation it belongs to, how long it took and how it failed. It is
// how metrics see etcd without the queue knowing about Prometheus.
// ObserveTxn must be safe for concurrent use and must not block.
type Observer interface {
	ObserveTxn(op string, took time.Duration, err error)
}

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
