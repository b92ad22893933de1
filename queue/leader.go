package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fence is the scheduler's fencing token: its election key and that key's
// create revision. Every leader write carries Fence.Cmp, so a deposed leader
// (its election key deleted when its session ended, or a newer leader's key
// in place) has its transaction rejected rather than applied.
type Fence struct {
	Key string
	Rev int64
}

// Cmp is the compare every leader transaction carries.
func (f Fence) Cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.Rev)
}

// hostsPerTxn is how many hosts one sharding transaction writes: two puts
// each (task and ready) plus the progress put stay within etcd's 128
// operations per branch.
const hostsPerTxn = 63

// Progress returns how many of a batch's hosts have been sharded into tasks.
func (q *Queue) Progress(ctx context.Context, batch string) (int, *mvccpb.KeyValue, error) {
	resp, err := q.cli.Get(ctx, q.keys.BatchProgress(batch))
	if err != nil {
		return 0, nil, err
	}
	if len(resp.Kvs) == 0 {
		return 0, nil, nil
	}
	n, err := strconv.Atoi(string(resp.Kvs[0].Value))
	if err != nil {
		return 0, nil, fmt.Errorf("%w at %s: %q is not a count", ErrBadValue, resp.Kvs[0].Key, resp.Kvs[0].Value)
	}
	return n, resp.Kvs[0], nil
}

// Shard writes the batch's tasks and ready keys, resuming from the stored
// progress. Each transaction writes up to 63 hosts and advances the progress
// counter, and holds only if the writer still leads and the counter is where
// it read it: a leader that dies half-way is succeeded by one that carries
// on from the counter, so no task is written twice and none is missed.
func (q *Queue) Shard(ctx context.Context, fence Fence, spec BatchSpec) error {
	done, _, err := q.Progress(ctx, spec.ID)
	if err != nil {
		return err
	}
	if done >= spec.Hosts {
		return nil
	}
	hosts, err := q.LoadHosts(ctx, spec)
	if err != nil {
		return err
	}
	progKey := q.keys.BatchProgress(spec.ID)
	for done < len(hosts) {
		end := min(done+hostsPerTxn, len(hosts))
		ops := make([]clientv3.Op, 0, 2*(end-done)+1)
		for _, h := range hosts[done:end] {
			t := Task{Batch: spec.ID, ID: TaskID(h.Name), Shard: ShardOf(h.Name, spec.Shards), Host: h}
			ops = append(ops, clientv3.OpPut(q.keys.Task(t.Batch, t.ID), mustJSON(t)))
			t.Attempt = 1
			ops = append(ops, clientv3.OpPut(q.keys.ReadyTask(t.Shard, t.Batch, t.ID), mustJSON(t)))
		}
		ops = append(ops, clientv3.OpPut(progKey, strconv.Itoa(end)))

		progressIs := clientv3.Compare(clientv3.Value(progKey), "=", strconv.Itoa(done))
		if done == 0 {
			progressIs = clientv3.Compare(clientv3.CreateRevision(progKey), "=", 0)
		}
		resp, err := q.cli.Txn(ctx).
			If(fence.Cmp(), progressIs). // still the leader; nobody sharded this range
			Then(ops...).
			Commit()
		if err != nil {
			return fmt.Errorf("shard batch %s hosts %d-%d: %w", spec.ID, done, end, err)
		}
		if !resp.Succeeded {
			return q.whyRejected(ctx, fence)
		}
		done = end
	}
	return nil
}

// whyRejected explains a failed fenced transaction: ErrNotLeader if the
// fence no longer holds, otherwise a conflict the caller may retry.
func (q *Queue) whyRejected(ctx context.Context, fence Fence) error {
	resp, err := q.cli.Get(ctx, fence.Key)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != fence.Rev {
		return ErrNotLeader
	}
	return errConflict
}

// errConflict is a leader transaction that lost a race with another write
// to the same keys; reading again and retrying is safe.
var errConflict = fmt.Errorf("queue: conflicting write, retry")

// IsConflict reports whether err is a lost race worth retrying.
func IsConflict(err error) bool { return err == errConflict }

// Recovery is what Recover did with a task.
type Recovery int

// Recover outcomes.
const (
	RecoverNone     Recovery = iota // finished, running or already queued
	RecoverRequeued                 // queued again for its next attempt
	RecoverGaveUp                   // out of attempts: an error result was committed
)

// Recover requeues a task that has no result, no claim and no ready key:
// its worker died or released it. The next attempt is one more than the
// task's recorded attempts; past maxAttempts it commits an error result
// instead. Every branch is conditional on the task still being orphaned,
// so Recover is safe to call for any task at any time.
func (q *Queue) Recover(ctx context.Context, fence Fence, batch, task string, maxAttempts int, now time.Time) (Recovery, error) {
	tkey := q.keys.Task(batch, task)
	resp, err := q.cli.Get(ctx, tkey)
	if err != nil {
		return RecoverNone, err
	}
	if len(resp.Kvs) == 0 {
		return RecoverNone, nil // batch deleted
	}
	var t Task
	if err := decodeKV(resp.Kvs[0], &t); err != nil {
		return RecoverNone, err
	}
	resKey, claimKey := q.keys.Result(batch, task), q.keys.Claim(batch, task)
	ready := q.keys.ReadyTask(t.Shard, batch, task)
	orphaned := []clientv3.Cmp{
		fence.Cmp(),
		clientv3.Compare(clientv3.CreateRevision(resKey), "=", 0),   // not finished
		clientv3.Compare(clientv3.CreateRevision(claimKey), "=", 0), // nobody runs it
		clientv3.Compare(clientv3.CreateRevision(ready), "=", 0),    // not queued already
		clientv3.Compare(clientv3.ModRevision(tkey), "=", resp.Kvs[0].ModRevision),
	}
	var outcome Recovery
	var op clientv3.Op
	if t.Attempt >= maxAttempts {
		r := Result{Host: t.Host.Name, Status: StatusError, Attempts: t.Attempt, FinishedAt: now.UTC(),
			Message: fmt.Sprintf("gave up after %d attempts: the worker running it was lost each time", t.Attempt)}
		outcome, op = RecoverGaveUp, clientv3.OpPut(resKey, mustJSON(r))
	} else {
		t.Attempt++
		outcome, op = RecoverRequeued, clientv3.OpPut(ready, mustJSON(t))
	}
	tr, err := q.cli.Txn(ctx).If(orphaned...).Then(op).Commit()
	if err != nil {
		return RecoverNone, err
	}
	if !tr.Succeeded {
		if err := q.whyRejected(ctx, fence); err == ErrNotLeader {
			return RecoverNone, err
		}
		return RecoverNone, nil
	}
	return outcome, nil
}

// Finish writes a batch's summary once and drops it from the active index.
func (q *Queue) Finish(ctx context.Context, fence Fence, batch string, s Summary) error {
	sumKey := q.keys.BatchSummary(batch)
	resp, err := q.cli.Txn(ctx).
		If(fence.Cmp(), clientv3.Compare(clientv3.CreateRevision(sumKey), "=", 0)). // written exactly once
		Then(clientv3.OpPut(sumKey, mustJSON(s)), clientv3.OpDelete(q.keys.ActiveBatch(batch))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		if err := q.whyRejected(ctx, fence); err == ErrNotLeader {
			return err
		}
	}
	return nil
}

// Tally counts results per status over a batch's results.
func (q *Queue) Tally(ctx context.Context, batch string) (map[string]Status, error) {
	out := map[string]Status{}
	_, err := q.rangeAll(ctx, q.keys.BatchResults(batch), func(kv *mvccpb.KeyValue) error {
		_, task, err := q.keys.ParseResult(string(kv.Key))
		if err != nil {
			return nil
		}
		var r Result
		if err := decodeKV(kv, &r); err != nil {
			r.Status = StatusError // a corrupt result still ends its task
		}
		out[task] = r.Status
		return nil
	})
	return out, err
}

// SummaryOf builds a summary from a tally.
func SummaryOf(total int, tally map[string]Status, now time.Time) Summary {
	s := Summary{Total: total, Counts: map[Status]int{}, FinishedAt: now.UTC()}
	for _, st := range tally {
		s.Counts[st]++
	}
	return s
}

// Orphans returns the tasks of a batch that have no result, no claim and no
// ready key: work that would otherwise never run. The scheduler's sweep
// recovers them; the claim watch alone misses deletions that happened while
// no scheduler was leading.
func (q *Queue) Orphans(ctx context.Context, spec BatchSpec) ([]string, error) {
	seen := map[string]bool{}
	mark := func(kv *mvccpb.KeyValue) error {
		k := string(kv.Key)
		seen[k[strings.LastIndexByte(k, '/')+1:]] = true
		return nil
	}
	// Ready first, then claims, then results: a task moves only forward
	// through these, so one read in this order cannot miss a task that is
	// merely moving between them.
	for shard := 0; shard < spec.Shards; shard++ {
		if _, err := q.rangeAll(ctx, q.keys.ReadyShard(shard)+spec.ID+"/", mark); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{q.keys.BatchClaims(spec.ID), q.keys.BatchResults(spec.ID)} {
		if _, err := q.rangeAll(ctx, p, mark); err != nil {
			return nil, err
		}
	}
	var out []string
	_, err := q.rangeAll(ctx, q.keys.Tasks(spec.ID), func(kv *mvccpb.KeyValue) error {
		k := string(kv.Key)
		if id := k[strings.LastIndexByte(k, '/')+1:]; !seen[id] {
			out = append(out, id)
		}
		return nil
	})
	return out, err
}
