package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// This file holds the reads a browser or an API client pages through: a
// batch's results a page at a time, one host looked up by name, the
// batch index. None of them reads a batch whole, so each costs the same
// for a batch of ten hosts as for one of a million.

// ResultPage is one page of a batch's committed results, in task order.
type ResultPage struct {
	Rows []HostResult
	// Next is the cursor of the next page (pass it as After), or "" when
	// the range is exhausted.
	Next string
	// Scanned is how many result keys were read to fill the page.
	Scanned int
	Bad     []BadValue
}

// PageQuery says which results a page holds.
type PageQuery struct {
	After  string          // a task ID: the page starts past it ("": from the start)
	Prefix string          // only hosts whose name starts with this ("": all)
	Limit  int             // rows wanted, at least 1
	Want   map[Status]bool // only these final statuses (nil: all)
	// MaxScan bounds the keys read when Want filters: a page of a rare
	// status ends early, with Next set, rather than reading the whole
	// batch. 0: 20 times Limit.
	MaxScan int
	// Until, if set, is the last task the page may read (a caller that
	// knows the batch's tasks passes the one Limit or MaxScan places on):
	// etcd counts every key from a range's start to its end to answer it,
	// so an unbounded range from the middle of a million results costs a
	// half-million-key walk; a bounded one costs the page.
	Until string
}

// ResultsPage reads one page of batch's committed results: a range over
// results/<batch>/ from q.After with a limit, never the whole batch. Hosts
// without a result (pending, retrying, running) are not in it: see
// InFlight and HostStatus.
func (q *Queue) ResultsPage(ctx context.Context, batch string, pq PageQuery) (ResultPage, error) {
	if pq.Limit < 1 {
		pq.Limit = 1
	}
	if pq.MaxScan <= 0 {
		pq.MaxScan = 20 * pq.Limit
	}
	base := q.keys.BatchResults(batch)
	from, end := base, prefixEnd(base)
	if pq.Prefix != "" {
		from = base + TaskID(pq.Prefix)
		end = prefixEnd(from)
	}
	if pq.After != "" {
		if k := base + pq.After + "\x00"; k > from {
			from = k
		}
	}
	bounded := false
	if pq.Until != "" {
		if k := base + pq.Until + "\x00"; k < end {
			end, bounded = k, true
		}
	}
	var page ResultPage
	for from < end {
		n := pq.Limit - len(page.Rows)
		if pq.Want != nil {
			n = min(pageSize, max(1, pq.MaxScan-page.Scanned))
		}
		resp, err := q.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(int64(n)))
		if err != nil {
			return ResultPage{}, err
		}
		for _, kv := range resp.Kvs {
			page.Scanned++
			_, task, err := q.keys.ParseResult(string(kv.Key))
			if err != nil {
				continue
			}
			page.Next = task
			if pq.Want != nil {
				if _, st, ok := q.resultStatus(kv); !ok || !pq.Want[st] {
					continue
				}
			}
			row, bad := q.resultRow(kv)
			if bad != nil {
				page.Bad = append(page.Bad, *bad)
			}
			page.Rows = append(page.Rows, row)
			if len(page.Rows) == pq.Limit {
				return page, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		if page.Scanned >= pq.MaxScan {
			return page, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	page.Next = ""
	if bounded {
		// The bound, not the batch, ended the page: go on from it.
		page.Next = pq.Until
	}
	return page, nil
}

// ResultsOf reads the results of the given tasks of batch, in the order
// given; tasks without a result are left out. It reads in transactions
// of at most 64 gets.
func (q *Queue) ResultsOf(ctx context.Context, batch string, tasks []string) ([]HostResult, []BadValue, error) {
	var rows []HostResult
	var bad []BadValue
	for chunk := range slices.Chunk(tasks, 64) {
		ops := make([]clientv3.Op, len(chunk))
		for i, t := range chunk {
			ops[i] = clientv3.OpGet(q.keys.Result(batch, t))
		}
		resp, err := q.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, nil, err
		}
		for _, r := range resp.Responses {
			kvs := r.GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				continue
			}
			row, b := q.resultRow(kvs[0])
			if b != nil {
				bad = append(bad, *b)
			}
			rows = append(rows, row)
		}
	}
	return rows, bad, nil
}

// ResultStatus is the task and status a result key holds, as the leader
// counts it (a value that does not decode is an error), reading only the
// status: what a follower of a batch's results needs. ok is false for a
// key that is not a result's.
func (q *Queue) ResultStatus(kv *mvccpb.KeyValue) (task string, st Status, ok bool) {
	return q.resultStatus(kv)
}

// InFlightTask is a task of a batch that has no result yet but is not
// merely pending: claimed by a worker, or waiting out a retry backoff.
type InFlightTask struct {
	Row  HostResult
	Zone string
}

// RunningTasks lists every claimed, unfinished task of every batch: one
// range over running/ and one over done/, whose size is the fleet's
// concurrency, not any batch's.
func (q *Queue) RunningTasks(ctx context.Context) ([]RunningTask, []BadValue, error) {
	return q.runningTasks(ctx)
}

// Retrying reads a page of batch's tasks waiting out a retry backoff, in
// task order, past the task after.
func (q *Queue) Retrying(ctx context.Context, batch, after string, limit int) (rows []InFlightTask, next string, err error) {
	base := q.keys.BatchDelayed(batch)
	from := base
	if after != "" {
		from = base + after + "\x00"
	}
	resp, err := q.cli.Get(ctx, from, clientv3.WithRange(prefixEnd(base)), clientv3.WithLimit(int64(max(1, limit))))
	if err != nil {
		return nil, "", err
	}
	for _, kv := range resp.Kvs {
		var t Task
		if err := decodeKV(kv, &t); err != nil {
			continue // the leader quarantines it when it promotes
		}
		rows = append(rows, retryingRow(t))
		next = t.ID
	}
	if !resp.More {
		next = ""
	}
	return rows, next, nil
}

func retryingRow(t Task) InFlightTask {
	r := InFlightTask{Zone: t.Zone, Row: HostResult{Task: t.ID, Result: Result{Host: t.Host.Name, Status: StatusRetrying,
		Attempts: t.Attempt - 1, Round: t.Round, History: t.History}}}
	if n := len(t.History); n > 0 {
		r.Row.Message = fmt.Sprintf("attempt %d at %s; last: %s", t.Attempt, t.NotBefore.UTC().Format(time.TimeOnly), t.History[n-1].Message)
	}
	return r
}

// RunningRow is the row a running task shows as.
func RunningRow(rt RunningTask) InFlightTask {
	t := rt.Task
	return InFlightTask{Zone: t.Zone, Row: HostResult{Task: t.ID, Result: Result{Host: t.Host.Name, Status: StatusRunning,
		Attempts: t.Attempt, Round: t.Round, Worker: rt.Worker, History: t.History}}}
}

// CountRetrying counts batch's tasks waiting out a retry backoff, without
// reading them.
func (q *Queue) CountRetrying(ctx context.Context, batch string) (int, error) {
	n, err := q.count(ctx, q.keys.BatchDelayed(batch))
	return int(n), err
}

// ErrHostNotFound is a host that is not in the batch.
var ErrHostNotFound = errors.New("queue: host not in batch")

// HostStatus finds where one host of a batch stands, reading only the keys
// its name leads to: its result, its delayed, held and ready keys (one per
// zone of the batch), then the running groups. A host found nowhere is
// pending when the batch is not fully sharded yet; otherwise it is not in
// the batch (ErrHostNotFound).
func (q *Queue) HostStatus(ctx context.Context, spec BatchSpec, host string) (HostResult, error) {
	task := TaskID(host)
	ops := []clientv3.Op{
		clientv3.OpGet(q.keys.Result(spec.ID, task)),
		clientv3.OpGet(q.keys.DelayedTask(spec.ID, task)),
		clientv3.OpGet(q.keys.HeldTask(spec.ID, task)),
	}
	shards := max(1, spec.Shards)
	for _, z := range spec.Zones {
		ops = append(ops, clientv3.OpGet(q.keys.ReadyTask(z, ShardOf(host, shards), spec.ID, task)))
	}
	resp, err := q.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return HostResult{}, err
	}
	kv := func(i int) *mvccpb.KeyValue {
		if kvs := resp.Responses[i].GetResponseRange().GetKvs(); len(kvs) > 0 {
			return kvs[0]
		}
		return nil
	}
	if r := kv(0); r != nil {
		row, _ := q.resultRow(r)
		return row, nil
	}
	if d := kv(1); d != nil {
		var t Task
		if err := decodeKV(d, &t); err != nil {
			return HostResult{}, err
		}
		return retryingRow(t).Row, nil
	}
	for i := 2; i < len(ops); i++ {
		if r := kv(i); r != nil {
			var t Task
			if err := decodeKV(r, &t); err != nil {
				return HostResult{}, err
			}
			return HostResult{Task: task, Result: Result{Host: t.Host.Name, Status: StatusPending, Attempts: t.Attempt - 1,
				Round: t.Round, History: t.History}}, nil
		}
	}
	running, _, err := q.runningTasks(ctx)
	if err != nil {
		return HostResult{}, err
	}
	for _, rt := range running {
		if rt.Task.Batch == spec.ID && rt.Task.ID == task {
			return RunningRow(rt).Row, nil
		}
	}
	sharded, err := q.Progress(ctx, spec.ID)
	if err != nil {
		return HostResult{}, err
	}
	if sharded < spec.Hosts {
		return HostResult{Task: task, Result: Result{Host: host, Status: StatusPending}}, nil
	}
	return HostResult{}, fmt.Errorf("%w: %s is not in batch %s", ErrHostNotFound, host, spec.ID)
}

// BatchIDs lists the IDs of every batch in the active and finished
// indexes, keys only: what a listing pages over before it reads any spec.
func (q *Queue) BatchIDs(ctx context.Context) (active, finished []string, err error) {
	for _, part := range []struct {
		prefix string
		out    *[]string
	}{{q.keys.Active(), &active}, {q.keys.Finished(), &finished}} {
		_, err := q.rangeAllAt(ctx, part.prefix, 0, func(kv *mvccpb.KeyValue) error {
			*part.out = append(*part.out, strings.TrimPrefix(string(kv.Key), part.prefix))
			return nil
		}, clientv3.WithKeysOnly())
		if err != nil {
			return nil, nil, err
		}
	}
	return active, finished, nil
}

// RetryStatuses are the statuses `retry` runs again: with failed, the
// hosts that failed, errored or ended dead; with cancelled, those
// cancelled or skipped.
func RetryStatuses(failed, cancelled bool) []Status {
	var out []Status
	if failed {
		out = append(out, StatusFail, StatusError, StatusDead)
	}
	if cancelled {
		out = append(out, StatusCancelled, StatusSkipped)
	}
	return out
}

// WorkerRow is a live worker as `patrol workers` and the console show it.
type WorkerRow struct {
	ID        string    `json:"id"`
	Zone      string    `json:"zone"`
	Running   int       `json:"running"`
	Capacity  int       `json:"capacity"`
	LeaseLeft int64     `json:"lease_left_s"` // -1 when etcd did not say
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	Stopping  bool      `json:"stopping,omitempty"`
}

// WorkerRows lists live workers with their running tasks and lease time
// left, sorted by ID.
func (q *Queue) WorkerRows(ctx context.Context) ([]WorkerRow, error) {
	workers, err := q.Workers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	running, err := q.RunningByWorker(ctx)
	if err != nil {
		return nil, fmt.Errorf("list running tasks: %w", err)
	}
	rows := make([]WorkerRow, 0, len(workers))
	for _, w := range workers {
		left := int64(-1)
		if ttl, err := q.cli.TimeToLive(ctx, w.Lease); err == nil {
			left = ttl.TTL
		}
		rows = append(rows, WorkerRow{ID: w.ID, Zone: w.Zone, Running: running[w.ID], Capacity: w.Capacity, LeaseLeft: left,
			Version: w.Version, StartedAt: w.StartedAt, Stopping: w.Stopping})
	}
	return rows, nil
}
