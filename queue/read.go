package queue

import (
	"context"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// HostResult is one host's row in a batch's results: its committed result,
// or pending/running while it has none.
type HostResult struct {
	Result
	Task string `json:"task"`
}

// Results returns one row per host of a batch, sorted by host name. Hosts
// without a result are pending, or running with the claiming worker named.
// Values that do not decode are reported in bad and shown as errors, so one
// corrupt key never hides the rest of a batch.
func (q *Queue) Results(ctx context.Context, batch string) (rows []HostResult, bad []BadValue, err error) {
	byTask := map[string]*HostResult{}
	// Tasks first: a batch still being sharded has fewer tasks than hosts.
	_, err = q.rangeAll(ctx, q.keys.Tasks(batch), func(kv *mvccpb.KeyValue) error {
		var t Task
		if err := decodeKV(kv, &t); err != nil {
			bad = append(bad, BadValue{Key: string(kv.Key), Err: err})
			return nil
		}
		byTask[t.ID] = &HostResult{Task: t.ID, Result: Result{Host: t.Host.Name, Status: StatusPending}}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	_, err = q.rangeAll(ctx, q.keys.BatchClaims(batch), func(kv *mvccpb.KeyValue) error {
		_, task, err := q.keys.ParseClaim(string(kv.Key))
		if err != nil {
			return nil
		}
		var c Claim
		if err := decodeKV(kv, &c); err != nil {
			bad = append(bad, BadValue{Key: string(kv.Key), Err: err})
			return nil
		}
		if row, ok := byTask[task]; ok {
			row.Status, row.Worker, row.Attempts = StatusRunning, c.Worker, c.Attempt
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	_, err = q.rangeAll(ctx, q.keys.BatchResults(batch), func(kv *mvccpb.KeyValue) error {
		_, task, err := q.keys.ParseResult(string(kv.Key))
		if err != nil {
			return nil
		}
		row := &HostResult{Task: task}
		if err := decodeKV(kv, &row.Result); err != nil {
			bad = append(bad, BadValue{Key: string(kv.Key), Err: err})
			row.Result = Result{Host: task, Status: StatusError, Message: "stored result is malformed: " + err.Error()}
		}
		byTask[task] = row
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

// Counts is how many of a batch's hosts stand in each status.
type Counts map[Status]int

// Done is how many hosts have a final result.
func (c Counts) Done() int { return c[StatusOK] + c[StatusFail] + c[StatusError] }

// Count tallies a batch's hosts by status.
func (q *Queue) Count(ctx context.Context, batch string) (Counts, BatchSpec, error) {
	spec, err := q.LoadBatch(ctx, batch)
	if err != nil {
		return nil, BatchSpec{}, err
	}
	tally, err := q.Tally(ctx, batch)
	if err != nil {
		return nil, spec, err
	}
	running, err := q.count(ctx, q.keys.BatchClaims(batch))
	if err != nil {
		return nil, spec, err
	}
	c := Counts{}
	for _, st := range tally {
		c[st]++
	}
	c[StatusRunning] = int(running)
	c[StatusPending] = max(0, spec.Hosts-c.Done()-c[StatusRunning])
	return c, spec, nil
}

// ResultCount is how many of a batch's hosts have a result.
func (q *Queue) ResultCount(ctx context.Context, batch string) (int, error) {
	n, err := q.count(ctx, q.keys.BatchResults(batch))
	return int(n), err
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
