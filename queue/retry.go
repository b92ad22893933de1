package queue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotFinished is a retry asked of a batch that is still running.
var ErrNotFinished = fmt.Errorf("queue: batch has not finished")

// RetryRequest asks the leader to run a finished batch's hosts in the
// given statuses again, as round Round. Stored at Keys.BatchRetry.
type RetryRequest struct {
	Round       int       `json:"round"`
	Statuses    []Status  `json:"statuses"`
	RequestedAt time.Time `json:"requested_at"`
}

// Cancel asks for a running batch to be cancelled: the leader ends its
// pending tasks as cancelled and workers abort its running checks. It
// reports false when the batch had already finished.
func (q *Queue) Cancel(ctx context.Context, batch string) (bool, error) {
	specKey, sumKey := q.keys.BatchSpec(batch), q.keys.BatchSummary(batch)
	resp, err := q.txn(ctx, "cancel").
		If(clientv3.Compare(clientv3.CreateRevision(specKey), ">", 0), clientv3.Compare(clientv3.CreateRevision(sumKey), "=", 0)).
		Then(clientv3.OpPut(q.keys.Cancel(batch), time.Now().UTC().Format(time.RFC3339))).
		Else(clientv3.OpGet(specKey, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return false, err
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return false, fmt.Errorf("%w: %s", ErrBatchNotFound, batch)
		}
		return false, nil
	}
	return true, nil
}

// RequestRetry reopens a finished batch for another round over the hosts
// whose results are in statuses. It returns the new round's number. The
// summary is removed and the batch made active again in the same
// transaction, so the leader never sees the batch half-reopened.
func (q *Queue) RequestRetry(ctx context.Context, batch string, statuses []Status) (int, error) {
	sumKey, retryKey := q.keys.BatchSummary(batch), q.keys.BatchRetry(batch)
	resp, err := q.txn(ctx, "read").Then(clientv3.OpGet(q.keys.BatchSpec(batch), clientv3.WithCountOnly()), clientv3.OpGet(sumKey)).Commit()
	if err != nil {
		return 0, err
	}
	if resp.Responses[0].GetResponseRange().Count == 0 {
		return 0, fmt.Errorf("%w: %s", ErrBatchNotFound, batch)
	}
	sums := resp.Responses[1].GetResponseRange().Kvs
	if len(sums) == 0 {
		return 0, fmt.Errorf("%w: %s; wait for it (patrol watch) or cancel it first", ErrNotFinished, batch)
	}
	round, err := q.lastRound(ctx, batch)
	if err != nil {
		return 0, err
	}
	req := RetryRequest{Round: round + 1, Statuses: statuses, RequestedAt: time.Now().UTC()}
	tr, err := q.txn(ctx, "retry").
		If(clientv3.Compare(clientv3.ModRevision(sumKey), "=", sums[0].ModRevision), clientv3.Compare(clientv3.CreateRevision(retryKey), "=", 0)).
		Then(
			clientv3.OpPut(retryKey, mustJSON(req)),
			clientv3.OpDelete(sumKey),
			clientv3.OpDelete(q.keys.BatchStop(batch)),
			clientv3.OpDelete(q.keys.FinishedBatch(batch)),
			clientv3.OpPut(q.keys.ActiveBatch(batch), batch),
		).
		Commit()
	if err != nil {
		return 0, err
	}
	if !tr.Succeeded {
		return 0, fmt.Errorf("%w: %s changed while the retry was being requested; run it again", ErrConflict, batch)
	}
	return req.Round, nil
}

// lastRound is the highest round among a batch's results.
func (q *Queue) lastRound(ctx context.Context, batch string) (int, error) {
	round := 0
	_, err := q.rangeAll(ctx, q.keys.BatchResults(batch), func(kv *mvccpb.KeyValue) error {
		var r Result
		if decodeKV(kv, &r) == nil && r.Round > round {
			round = r.Round
		}
		return nil
	})
	return round, err
}

// PendingRetry returns a batch's retry request, if any.
func (q *Queue) PendingRetry(ctx context.Context, batch string) (*RetryRequest, error) {
	key := q.keys.BatchRetry(batch)
	resp, err := q.cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	var req RetryRequest
	if err := decodeKV(resp.Kvs[0], &req); err != nil {
		return nil, err
	}
	return &req, nil
}

// RunRetry carries out a retry request: every result of an earlier round in
// the requested statuses is moved back to its ready queue as attempt 1 of
// the new round, its outcome kept in the task's history; then the request
// is removed. Moves go 60 to a transaction, each compared on the result it
// moves, so the work can be resumed by another leader. It returns how many
// tasks it queued.
func (q *Queue) RunRetry(ctx context.Context, fence Fence, spec BatchSpec, req RetryRequest) (int, error) {
	var todo []*mvccpb.KeyValue
	var tasks []Task
	_, err := q.rangeAll(ctx, q.keys.BatchResults(spec.ID), func(kv *mvccpb.KeyValue) error {
		var r Result
		if err := decodeKV(kv, &r); err != nil {
			r = Result{Status: StatusError, Message: err.Error()}
		}
		if r.Round >= req.Round || !slices.Contains(req.Statuses, r.Status) {
			return nil
		}
		_, id, err := q.keys.ParseResult(string(kv.Key))
		if err != nil {
			return nil
		}
		host := r.Host
		if host == "" {
			host = id
		}
		hist := append(append([]Attempt(nil), r.History...), Attempt{Attempt: r.Attempts, Status: r.Status, Message: r.Message,
			Worker: r.Worker, DurationMS: r.DurationMS, FinishedAt: r.FinishedAt, Round: r.Round})
		todo = append(todo, kv)
		tasks = append(tasks, Task{Batch: spec.ID, ID: id, Zone: DefaultZone, Shard: ShardOf(host, spec.Shards), Round: req.Round, Attempt: 1, History: hist})
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(todo) > 0 {
		hosts, err := q.LoadHosts(ctx, spec)
		if err != nil {
			return 0, err
		}
		byID := make(map[string]int, len(hosts))
		for i, h := range hosts {
			byID[TaskID(h.Name)] = i
		}
		for i := range tasks {
			if j, ok := byID[tasks[i].ID]; ok {
				tasks[i].Host, tasks[i].Zone = hosts[j], ZoneOf(hosts[j])
			}
		}
	}
	moved := 0
	for start := 0; start < len(todo); start += chunk {
		end := min(start+chunk, len(todo))
		cmps := []clientv3.Cmp{fence.Cmp()}
		ops := []clientv3.Op{clientv3.OpPut(q.keys.Wake(), "")}
		for i := start; i < end; i++ {
			t := tasks[i]
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(todo[i].Key)), "=", todo[i].ModRevision))
			ops = append(ops, clientv3.OpDelete(string(todo[i].Key)), clientv3.OpPut(q.queueKey(spec, t), mustJSON(t)))
		}
		resp, err := q.txn(ctx, "retry").If(cmps...).Then(ops...).Commit()
		if err != nil {
			return moved, err
		}
		if !resp.Succeeded {
			return moved, q.whyRejected(ctx, fence) // ErrConflict: the caller runs it again
		}
		moved += end - start
	}
	key := q.keys.BatchRetry(spec.ID)
	_, err = q.txn(ctx, "retry").If(fence.Cmp()).Then(clientv3.OpDelete(key)).Commit()
	return moved, err
}
