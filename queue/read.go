package queue

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// HostResult is one host's row in a batch's results: its committed result,
// or where it stands while it has none.
type HostResult struct {
	Result
	Task string `json:"task"`
}

// Results returns one row per host of a batch, sorted by host name. Hosts
// without a result are pending, retrying (waiting out a backoff) or running
// with the claiming worker named. Values that do not decode are reported
// in bad and shown as errors, so one corrupt key never hides the rest.
func (q *Queue) Results(ctx context.Context, batch string) (rows []HostResult, bad []BadValue, err error) {
	spec, err := q.LoadBatch(ctx, batch)
	if err != nil {
		return nil, nil, err
	}
	hosts, err := q.LoadHosts(ctx, spec)
	if err != nil {
		return nil, nil, err
	}
	byTask := make(map[string]*HostResult, len(hosts))
	for _, h := range hosts {
		id := TaskID(h.Name)
		byTask[id] = &HostResult{Task: id, Result: Result{Host: h.Name, Status: StatusPending}}
	}
	prog, bad, err := q.InProgress(ctx, batch)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range prog {
		if row, ok := byTask[r.Task]; ok {
			*row = r
		}
	}
	_, err = q.rangeAll(ctx, q.keys.BatchResults(batch), func(kv *mvccpb.KeyValue) error {
		r, b := q.resultRow(kv)
		row, ok := byTask[r.Task]
		if !ok {
			return nil
		}
		if b != nil {
			bad = append(bad, *b)
			r.Host = row.Host
		}
		*row = r
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	rows = make([]HostResult, 0, len(byTask))
	for _, r := range byTask {
		rows = append(rows, *r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Host < rows[j].Host })
	return rows, bad, nil
}

// RunningTask is a task inside a claimed group that has no outcome yet.
type RunningTask struct {
	Group  string
	Worker string
	Task   Task
}

// runningTasks lists every claimed, unfinished task.
func (q *Queue) runningTasks(ctx context.Context) ([]RunningTask, []BadValue, error) {
	done := map[string]map[int]bool{}
	_, err := q.rangeAll(ctx, q.keys.Done(), func(kv *mvccpb.KeyValue) error {
		if g, err := q.keys.ParseGroup(string(kv.Key)); err == nil {
			done[g] = parseDone([]*mvccpb.KeyValue{kv})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var out []RunningTask
	var bad []BadValue
	_, err = q.rangeAll(ctx, q.keys.Running(), func(kv *mvccpb.KeyValue) error {
		g, err := q.keys.ParseGroup(string(kv.Key))
		if err != nil {
			return nil
		}
		var run Running
		if err := decodeKV(kv, &run); err != nil {
			bad = append(bad, BadValue{KV: kv, Err: err})
			return nil
		}
		for i, t := range run.Tasks {
			if !done[g][i] {
				out = append(out, RunningTask{Group: g, Worker: run.Worker, Task: t})
			}
		}
		return nil
	})
	return out, bad, err
}

// Counts is how many of a batch's hosts stand in each status.
type Counts map[Status]int

// Total is how many hosts the counts hold, in any status.
func (c Counts) Total() int {
	n := 0
	for _, k := range c {
		n += k
	}
	return n
}

// Done is how many hosts have a final result.
func (c Counts) Done() int {
	n := 0
	for s, k := range c {
		if s.Final() {
			n += k
		}
	}
	return n
}

// Count tallies a batch's hosts by status. The results come from the
// counts the leader publishes about once a second (ResultCounts), so a
// refresh costs two reads whatever the batch's size: one transaction for
// the spec, the published counts, the summary and the count of delayed
// tasks, and the running tasks (bounded by the fleet's capacity); a
// finished batch's counts come from its summary. at is when the counts
// were published; zero when none were yet, and all hosts without a
// running or delayed task count as pending.
func (q *Queue) Count(ctx context.Context, batch string) (c Counts, spec BatchSpec, at time.Time, err error) {
	resp, err := q.txn(ctx, "read").Then(
		clientv3.OpGet(q.keys.BatchSpec(batch)),
		clientv3.OpGet(q.keys.BatchCounts(batch)),
		clientv3.OpGet(q.keys.BatchSummary(batch)),
		clientv3.OpGet(q.keys.BatchDelayed(batch), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return nil, BatchSpec{}, time.Time{}, err
	}
	if spec, err = specOf(batch, resp.Responses[0].GetResponseRange().Kvs); err != nil {
		return nil, BatchSpec{}, time.Time{}, err
	}
	pub, _, err := countsOf(resp.Responses[1].GetResponseRange().Kvs)
	if err != nil {
		return nil, spec, time.Time{}, err
	}
	// A finished batch's counts are its summary's.
	if sum, done, err := summaryOf(resp.Responses[2].GetResponseRange().Kvs); err != nil {
		return nil, spec, time.Time{}, err
	} else if done {
		pub = PublishedCounts{Counts: sum.Counts, At: sum.FinishedAt}
	}
	c = Counts{}
	for st, n := range pub.Counts {
		c[st] = n
	}
	running, _, err := q.runningTasks(ctx)
	if err != nil {
		return nil, spec, time.Time{}, err
	}
	for _, rt := range running {
		if rt.Task.Batch == batch {
			c[StatusRunning]++
		}
	}
	c[StatusRetrying] = int(resp.Responses[3].GetResponseRange().Count)
	c[StatusPending] = max(0, spec.Hosts-c.Done()-c[StatusRunning]-c[StatusRetrying])
	return c, spec, pub.At, nil
}

// Leader is the current scheduler leader as recorded in etcd.
type Leader struct {
	LeaderInfo
	Key string `json:"key"`
	Rev int64  `json:"election_rev"`
}

// CurrentLeader returns the elected scheduler, and false when none leads.
// It reads what concurrency.Election reads: the candidate key with the
// lowest create revision under the election prefix.
func (q *Queue) CurrentLeader(ctx context.Context) (Leader, bool, error) {
	resp, err := q.cli.Get(ctx, q.keys.Election()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return Leader{}, false, err
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, false, nil
	}
	kv := resp.Kvs[0]
	l := Leader{Key: string(kv.Key), Rev: kv.CreateRevision}
	if err := decodeKV(kv, &l.LeaderInfo); err != nil {
		return l, true, err
	}
	return l, true, nil
}

// RunningByWorker counts claimed, unfinished tasks per worker ID.
func (q *Queue) RunningByWorker(ctx context.Context) (map[string]int, error) {
	tasks, _, err := q.runningTasks(ctx)
	out := map[string]int{}
	for _, t := range tasks {
		out[t.Worker]++
	}
	return out, err
}

// BatchInfo is one batch as `patrol batches` lists it.
type BatchInfo struct {
	Spec     BatchSpec
	Active   bool
	Summary  *Summary // set once finished
	Progress int      // hosts with a result, as the leader last published (ResultCounts)
}

// Batches lists batches, newest first, at most limit of them (0: all).
// It reads the active and finished indexes, not the batches' inventories.
func (q *Queue) Batches(ctx context.Context, limit int) ([]BatchInfo, error) {
	ids := map[string]bool{}
	for _, p := range []string{q.keys.Active(), q.keys.Finished()} {
		resp, err := q.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			ids[strings.TrimPrefix(string(kv.Key), p)] = true
		}
	}
	var out []BatchInfo
	for id := range ids {
		spec, err := q.LoadBatch(ctx, id)
		if errors.Is(err, ErrBatchNotFound) || errors.Is(err, ErrBadValue) {
			continue // purged meanwhile, or unreadable: not listable
		}
		if err != nil {
			return nil, err
		}
		out = append(out, BatchInfo{Spec: spec})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.CreatedAt.After(out[j].Spec.CreatedAt) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, q.fillBatchInfo(ctx, out)
}
