package queue

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxClaim is the most tasks one claim transaction takes: three operations
// per task (delete the ready key, put the claim, record the attempt on the
// task) stay within etcd's 128 operations per branch.
const MaxClaim = 42

// Ready is a claimable task as a worker saw it.
type Ready struct {
	Task   Task
	Key    string
	ModRev int64 // the ready key's revision when listed; the claim compares it
}

// Claimed is a task this worker holds. ClaimRev is the claim key's create
// revision: the fencing token its completion compares.
type Claimed struct {
	Task     Task
	Claim    Claim
	ClaimKey string
	ClaimRev int64
}

// BadValue is a key whose value did not decode, found while listing.
type BadValue struct {
	Key string
	Err error
}

// ListReady returns up to limit claimable tasks, starting at shard start and
// wrapping around, so that workers starting at different shards rarely race
// for the same keys. Values that do not decode are returned apart.
func (q *Queue) ListReady(ctx context.Context, start, limit int) ([]Ready, []BadValue, error) {
	from := q.keys.ReadyShard(start)
	all, end := q.keys.Ready(), prefixEnd(q.keys.Ready())
	var out []Ready
	var bad []BadValue
	for _, r := range [][2]string{{from, end}, {all, from}} {
		if len(out) >= limit || r[0] == r[1] {
			break
		}
		resp, err := q.cli.Get(ctx, r[0], clientv3.WithRange(r[1]), clientv3.WithLimit(int64(limit-len(out))))
		if err != nil {
			return nil, nil, err
		}
		for _, kv := range resp.Kvs {
			var t Task
			if err := decodeKV(kv, &t); err != nil {
				bad = append(bad, BadValue{Key: string(kv.Key), Err: err})
				continue
			}
			out = append(out, Ready{Task: t, Key: string(kv.Key), ModRev: kv.ModRevision})
		}
	}
	return out, bad, nil
}

// Claim takes as many of ready (at most MaxClaim) as it can, in one
// transaction per round: every ready key must be unchanged since it was
// listed, and then all are deleted and a claim key bound to lease is put for
// each, and the attempt is recorded on the durable task. When another worker took some, the Else branch reads which are
// still there and the next round claims those. It returns what was claimed.
func (q *Queue) Claim(ctx context.Context, lease clientv3.LeaseID, worker string, ready []Ready, now time.Time) ([]Claimed, error) {
	if len(ready) > MaxClaim {
		ready = ready[:MaxClaim]
	}
	for len(ready) > 0 {
		cmps := make([]clientv3.Cmp, 0, 2*len(ready))
		then := make([]clientv3.Op, 0, 2*len(ready))
		els := make([]clientv3.Op, 0, len(ready))
		claims := make([]Claimed, 0, len(ready))
		for _, r := range ready {
			t := r.Task
			c := Claim{Worker: worker, Host: t.Host.Name, Attempt: t.Attempt, ClaimedAt: now.UTC()}
			ckey := q.keys.Claim(t.Batch, t.ID)
			cmps = append(cmps,
				clientv3.Compare(clientv3.ModRevision(r.Key), "=", r.ModRev), // still ready, as listed
				clientv3.Compare(clientv3.CreateRevision(ckey), "=", 0),      // nobody holds it
			)
			then = append(then,
				clientv3.OpDelete(r.Key),
				clientv3.OpPut(ckey, mustJSON(c), clientv3.WithLease(lease)),
				clientv3.OpPut(q.keys.Task(t.Batch, t.ID), mustJSON(t)), // durable attempt count
			)
			els = append(els, clientv3.OpGet(r.Key, clientv3.WithKeysOnly()))
			claims = append(claims, Claimed{Task: t, Claim: c, ClaimKey: ckey})
		}
		resp, err := q.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		if err != nil {
			return nil, fmt.Errorf("claim %d tasks: %w", len(ready), err)
		}
		if resp.Succeeded {
			for i := range claims {
				claims[i].ClaimRev = resp.Header.Revision // every put in a txn gets its revision
			}
			return claims, nil
		}
		// Keep those whose ready key is still at the listed revision.
		left := ready[:0]
		for i, r := range ready {
			kvs := resp.Responses[i].GetResponseRange().Kvs
			if len(kvs) == 1 && kvs[0].ModRevision == r.ModRev {
				left = append(left, r)
			}
		}
		if len(left) == len(ready) {
			// Every ready key is as listed, so a claim key was in the way:
			// a stale claim from a requeue race. Leave these to the scheduler.
			return nil, nil
		}
		ready = left
	}
	return nil, nil
}

// Complete commits a result for a claimed task and releases the claim, in
// one transaction that holds only while the claim key is the one this
// worker created. A worker whose lease expired, whose claim was revoked, or
// that slept past its TTL gets false and writes nothing.
func (q *Queue) Complete(ctx context.Context, c Claimed, r Result) (bool, error) {
	resp, err := q.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(c.ClaimKey), "=", c.ClaimRev)). // fenced on our claim
		Then(
			clientv3.OpPut(q.keys.Result(c.Task.Batch, c.Task.ID), mustJSON(r)),
			clientv3.OpDelete(c.ClaimKey),
		).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Release gives a claimed task back at once (a draining worker), so it is
// requeued without waiting for the lease to expire.
func (q *Queue) Release(ctx context.Context, c Claimed) error {
	_, err := q.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(c.ClaimKey), "=", c.ClaimRev)).
		Then(clientv3.OpDelete(c.ClaimKey)).
		Commit()
	return err
}
