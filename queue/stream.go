package queue

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// streamPage is how many results EachResult reads per request.
const streamPage = 1000

// EachResult calls fn with each committed result of a batch, in task ID
// order (host name order, for names that need no escaping), starting after
// the task after ("" from the first), one page of results in memory at a
// time, until fn returns false or the results end. A value that does not
// decode is passed as an error row, and reported in bad. Unlike Results it
// never loads the inventory: it serves batches of any size.
func (q *Queue) EachResult(ctx context.Context, batch, after string, fn func(HostResult) bool) (bad []BadValue, err error) {
	prefix := q.keys.BatchResults(batch)
	end := prefixEnd(prefix)
	key := prefix
	if after != "" {
		key = q.keys.Result(batch, after) + "\x00"
	}
	for {
		resp, err := q.cli.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(streamPage))
		if err != nil {
			return bad, err
		}
		for _, kv := range resp.Kvs {
			row, b := q.resultRow(kv)
			if b != nil {
				bad = append(bad, *b)
			}
			if !fn(row) {
				return bad, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return bad, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// resultRow decodes one result key as a row; a malformed value becomes an
// error row, returned as bad too.
func (q *Queue) resultRow(kv *mvccpb.KeyValue) (HostResult, *BadValue) {
	k := string(kv.Key)
	task := k[strings.LastIndexByte(k, '/')+1:]
	row := HostResult{Task: task}
	err := decodeKV(kv, &row.Result)
	if err == nil && !row.Result.Status.Final() {
		err = fmt.Errorf("%w at %s: status %q is not a result's", ErrBadValue, kv.Key, row.Result.Status)
	}
	if err != nil {
		host := row.Result.Host
		if host == "" {
			host = task
		}
		row.Result = Result{Host: host, Status: StatusError, Message: "stored result is malformed: " + err.Error()}
		return row, &BadValue{KV: kv, Err: err}
	}
	return row, nil
}

// InProgress returns a batch's hosts that are running or waiting out a
// retry backoff, sorted by task ID: the rows EachResult does not give
// while the batch runs, bar the pending ones. Both sets are bounded by
// the fleet's capacity and the batch's failures, not its size.
func (q *Queue) InProgress(ctx context.Context, batch string) (rows []HostResult, bad []BadValue, err error) {
	_, err = q.rangeAll(ctx, q.keys.BatchDelayed(batch), func(kv *mvccpb.KeyValue) error {
		var t Task
		if err := decodeKV(kv, &t); err != nil {
			bad = append(bad, BadValue{KV: kv, Err: err})
			return nil
		}
		r := HostResult{Task: t.ID, Result: Result{Host: t.Host.Name, Status: StatusRetrying, Attempts: t.Attempt - 1, History: t.History}}
		if n := len(t.History); n > 0 {
			r.Message = fmt.Sprintf("attempt %d at %s; last: %s", t.Attempt, t.NotBefore.Format(time.TimeOnly), t.History[n-1].Message)
		}
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	running, badRun, err := q.runningTasks(ctx)
	if err != nil {
		return nil, nil, err
	}
	bad = append(bad, badRun...)
	for _, rt := range running {
		if rt.Task.Batch == batch {
			rows = append(rows, HostResult{Task: rt.Task.ID, Result: Result{Host: rt.Task.Host.Name, Status: StatusRunning,
				Worker: rt.Worker, Attempts: rt.Task.Attempt, History: rt.Task.History}})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Task < rows[j].Task })
	return rows, bad, nil
}
