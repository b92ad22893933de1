package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Space is what etcd says of its storage: the member nearest its quota
// counts, since its quota is the one a write hits first.
type Space struct {
	Size    int64    // the largest member's database file
	InUse   int64    // the part of it holding data; defragmentation frees the rest
	Quota   int64    // --quota-backend-bytes; 0 when no member reports it (etcd before 3.6)
	NoSpace bool     // the NOSPACE alarm is raised: etcd takes reads and deletes only
	Alarms  []string // every alarm raised, by name ("NOSPACE", "CORRUPT")
	Members int      // endpoints that answered
}

// Free is how many bytes etcd takes before its quota, 0 when the quota is
// unknown or reached. etcd measures the database file, so space that only
// defragmentation frees does not count.
func (s Space) Free() int64 {
	if s.Quota == 0 {
		return 0
	}
	return max(0, s.Quota-s.Size)
}

// Space asks every endpoint for its database size and quota, and etcd for
// its alarms. An endpoint that does not answer is skipped; no answer at
// all is an error.
func (q *Queue) Space(ctx context.Context) (Space, error) {
	var s Space
	var lastErr error
	for _, ep := range q.cli.Endpoints() {
		st, err := q.cli.Status(ctx, ep)
		if err != nil {
			lastErr = err
			continue
		}
		s.Members++
		s.Size = max(s.Size, st.DbSize)
		s.InUse = max(s.InUse, st.DbSizeInUse)
		s.Quota = max(s.Quota, st.DbSizeQuota)
	}
	if s.Members == 0 {
		return s, fmt.Errorf("no etcd endpoint answered a status request: %w", lastErr)
	}
	alarms, err := q.cli.AlarmList(ctx)
	if err != nil {
		return s, fmt.Errorf("list etcd's alarms: %w", err)
	}
	for _, a := range alarms.Alarms {
		name := a.Alarm.String()
		if !slices.Contains(s.Alarms, name) {
			s.Alarms = append(s.Alarms, name)
		}
		if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
			s.NoSpace = true
		}
	}
	return s, nil
}

// IsNoSpace reports whether err is etcd refusing a write because its
// database reached its quota.
func IsNoSpace(err error) bool {
	return errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace)
}

// RemoveQueued deletes a batch's tasks that have not started (ready,
// delayed and held), in transactions of deletes only, which etcd takes
// even under its NOSPACE alarm: it is how a batch is stopped, and its
// largest part freed, while etcd refuses writes. The tasks are gone, not
// ended: once etcd takes writes again, cancelling the batch ends them
// cancelled. It returns how many keys it deleted.
func (q *Queue) RemoveQueued(ctx context.Context, batch string) (int64, error) {
	spec, err := q.LoadBatch(ctx, batch)
	if err != nil {
		return 0, err
	}
	var ops []clientv3.Op
	for _, p := range append(q.readyPrefixes(spec), q.keys.BatchDelayed(batch), q.keys.BatchHeld(batch)) {
		ops = append(ops, clientv3.OpDelete(p, clientv3.WithPrefix()))
	}
	return q.deleteAll(ctx, "remove_queued", ops)
}

// deleteAll runs deletes in transactions of deletes only, as many as etcd
// allows in each, and returns how many keys they deleted.
func (q *Queue) deleteAll(ctx context.Context, op string, ops []clientv3.Op) (int64, error) {
	var deleted int64
	for len(ops) > 0 {
		n := min(len(ops), EtcdMaxTxnOps)
		resp, err := q.txn(ctx, op).Then(ops[:n]...).Commit()
		if err != nil {
			return deleted, err
		}
		ops = ops[n:]
		for _, r := range resp.Responses {
			deleted += r.GetResponseDeleteRange().Deleted
		}
	}
	return deleted, nil
}

// DeleteBatch deletes everything a batch keeps in etcd: its record,
// inventory, results, queued tasks, cancel request and index entries, in
// one transaction of deletes only (etcd takes it even under its NOSPACE
// alarm). An active batch is refused unless force: workers abort its
// running checks when it stops being active, and what they commit then
// lands under a batch that no longer exists, for a second DeleteBatch.
// It returns how many keys it deleted (0: there was no such batch).
func (q *Queue) DeleteBatch(ctx context.Context, batch string, force bool) (int64, error) {
	spec, err := q.LoadBatch(ctx, batch)
	if err != nil && !errors.Is(err, ErrBadValue) && !errors.Is(err, ErrBatchNotFound) {
		return 0, err // a batch without a record may still have results: delete them
	}
	if !force {
		n, err := q.count(ctx, q.keys.ActiveBatch(batch))
		if err != nil {
			return 0, err
		}
		if n > 0 {
			return 0, fmt.Errorf("%w: batch %s is still running: cancel it first, or pass --force to delete it as it runs", ErrBatchActive, batch)
		}
	}
	ops := []clientv3.Op{
		clientv3.OpDelete(q.keys.Batch(batch), clientv3.WithPrefix()),
		clientv3.OpDelete(q.keys.BatchResults(batch), clientv3.WithPrefix()),
		clientv3.OpDelete(q.keys.BatchDelayed(batch), clientv3.WithPrefix()),
		clientv3.OpDelete(q.keys.BatchHeld(batch), clientv3.WithPrefix()),
		clientv3.OpDelete(q.keys.Cancel(batch)),
		clientv3.OpDelete(q.keys.ActiveBatch(batch)),
		clientv3.OpDelete(q.keys.FinishedBatch(batch)),
	}
	if spec.ID != "" {
		for _, p := range q.readyPrefixes(spec) {
			ops = append(ops, clientv3.OpDelete(p, clientv3.WithPrefix()))
		}
	}
	return q.deleteAll(ctx, "delete_batch", ops)
}
