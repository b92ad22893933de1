package queue

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PublishedCounts is what the leader publishes of an active batch's
// results at Keys.BatchCounts, from the result tally it follows anyway,
// so that `patrol status`, `watch` and `submit --wait` read one key per
// refresh instead of every result.
type PublishedCounts struct {
	// Counts is how many results stand in each final status.
	Counts Counts `json:"counts"`
	// At is when the leader last published them.
	At time.Time `json:"at"`
}

// PublishCounts writes an active batch's result counts, fenced. It writes
// nothing once the batch's spec is gone (deleted while it ran).
func (q *Queue) PublishCounts(ctx context.Context, fence Fence, batch string, c Counts, at time.Time) error {
	resp, err := q.txn(ctx, "publish_counts").
		If(fence.Cmp(), clientv3.Compare(clientv3.CreateRevision(q.keys.BatchSpec(batch)), ">", 0)).
		Then(clientv3.OpPut(q.keys.BatchCounts(batch), mustJSON(PublishedCounts{Counts: c, At: at.UTC()}))).
		Commit()
	if err != nil {
		return err
	}
	return q.fenceLost(ctx, fence, resp.Succeeded)
}

// ResultCounts reads what the leader last published of a batch's result
// counts, and false when it has published nothing yet (a batch that was
// just submitted, or while no scheduler has led since).
func (q *Queue) ResultCounts(ctx context.Context, batch string) (PublishedCounts, bool, error) {
	resp, err := q.cli.Get(ctx, q.keys.BatchCounts(batch))
	if err != nil {
		return PublishedCounts{}, false, err
	}
	return countsOf(resp.Kvs)
}

// countsOf decodes published counts from what a read of their key found.
func countsOf(kvs []*mvccpb.KeyValue) (PublishedCounts, bool, error) {
	if len(kvs) == 0 {
		return PublishedCounts{}, false, nil
	}
	var p PublishedCounts
	if err := decodeKV(kvs[0], &p); err != nil {
		return PublishedCounts{}, false, fmt.Errorf("%w (the leader writes it again within a second)", err)
	}
	return p, true, nil
}
