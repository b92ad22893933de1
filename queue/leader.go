package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/inventory"
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

// chunk is how many tasks one transaction moves: etcd allows 128
// operations per branch, and every chunked transaction below spends at most
// two per task plus a few of its own.
const chunk = 60

// shardChunk is how many hosts one sharding transaction writes: one put
// each, plus the progress counter and the wake key.
const shardChunk = 120

// Progress returns how many of a batch's hosts have been sharded into tasks.
func (q *Queue) Progress(ctx context.Context, batch string) (int, error) {
	lanes, err := q.laneProgress(ctx, batch)
	total := 0
	for _, n := range lanes {
		total += n
	}
	return total, err
}

func (q *Queue) laneProgress(ctx context.Context, batch string) (map[int]int, error) {
	resp, err := q.cli.Get(ctx, q.keys.BatchProgress(batch), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	return q.parseProgress(batch, resp.Kvs)
}

// parseProgress reads a batch's lane counters.
func (q *Queue) parseProgress(batch string, kvs []*mvccpb.KeyValue) (map[int]int, error) {
	prefix := q.keys.BatchProgress(batch)
	out := map[int]int{}
	for _, kv := range kvs {
		lane, err1 := strconv.Atoi(string(kv.Key)[len(prefix):])
		n, err2 := strconv.Atoi(string(kv.Value))
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w at %s: %q is not a count", ErrBadValue, kv.Key, kv.Value)
		}
		out[lane] = n
	}
	return out, nil
}

// lanes is how many sharding transactions a batch runs at once: one per
// 2,000 hosts, at most 8. Each lane owns a contiguous slice of the
// inventory and its own progress counter, so lanes never conflict.
func lanes(hosts int) int { return max(1, min(8, hosts/2000)) }

// laneRange is the slice of the inventory lane l of n covers.
func laneRange(hosts, l, n int) (int, int) { return hosts * l / n, hosts * (l + 1) / n }

// stopState is why a batch stops early ("" while it runs normally) and
// the stop record's mod revision (0: none).
func (q *Queue) stopState(ctx context.Context, batch string) (Status, int64, error) {
	resp, err := q.cli.Get(ctx, q.keys.BatchStop(batch))
	if err != nil || len(resp.Kvs) == 0 {
		return "", 0, err
	}
	return Status(resp.Kvs[0].Value), resp.Kvs[0].ModRevision, nil
}

// Shard writes the batch's ready keys, resuming from the stored progress.
// The inventory is split into lanes written concurrently; each transaction
// writes up to 120 hosts of its lane and advances the lane's counter, and
// holds only if the writer still leads and the counter is where it read it:
// a leader that dies half-way is succeeded by one that carries on from the
// counters, so no task is written twice and none is missed. Hosts of a
// batch that was stopped (cancelled, max failures) get that final result
// instead of a ready key.
func (q *Queue) Shard(ctx context.Context, fence Fence, spec BatchSpec) error {
	// The lanes' counters and the stop record, in one round trip: a
	// ten-host batch is sharded in three (this, its inventory, the write).
	resp, err := q.txn(ctx, "read").Then(
		clientv3.OpGet(q.keys.BatchProgress(spec.ID), clientv3.WithPrefix()),
		clientv3.OpGet(q.keys.BatchStop(spec.ID)),
	).Commit()
	if err != nil {
		return err
	}
	progress, err := q.parseProgress(spec.ID, resp.Responses[0].GetResponseRange().Kvs)
	if err != nil {
		return err
	}
	var stop Status
	var stopRev int64
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		stop, stopRev = Status(kvs[0].Value), kvs[0].ModRevision
	}
	n := lanes(spec.Hosts)
	pending := false
	for l := range n {
		from, to := laneRange(spec.Hosts, l, n)
		if progress[l] < to-from {
			pending = true
		}
	}
	if !pending {
		return nil
	}
	// The lanes read the inventory a chunk at a time, each from where it
	// stands: a million hosts are never in memory at once.
	inv, err := q.chunkIndex(ctx, spec)
	if err != nil {
		return err
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for l := range n {
		from, to := laneRange(spec.Hosts, l, n)
		wg.Go(func() { errs[l] = q.shardLane(ctx, fence, spec, l, inv, from, to, progress[l], stop, stopRev) })
	}
	wg.Wait()
	for _, err := range errs {
		if errors.Is(err, ErrNotLeader) {
			return err
		}
	}
	return errors.Join(errs...)
}

// shardLane writes the tasks of hosts [from, to) of the inventory, from
// the done-th on, a transaction of shardChunk hosts at a time. stop and
// stopRev are the stop record as read (stopRev 0: none).
func (q *Queue) shardLane(ctx context.Context, fence Fence, spec BatchSpec, lane int, inv *chunkIndex, from, to, done int, stop Status, stopRev int64) error {
	progKey, stopKey := q.keys.BatchLane(spec.ID, lane), q.keys.BatchStop(spec.ID)
	// Each transaction holds only while the stop record is as read, so
	// the record is read once, not before every chunk, and a stop never
	// slips in between the read and the write.
	var err error
	var hosts []inventory.Host // read, from host from+done on
	for done < to-from {
		if len(hosts) == 0 {
			if hosts, err = inv.read(ctx, from+done, to); err != nil {
				return err
			}
		}
		n := min(shardChunk, len(hosts))
		ops := make([]clientv3.Op, 0, n+2)
		now := time.Now().UTC()
		for _, h := range hosts[:n] {
			t := Task{Batch: spec.ID, ID: TaskID(h.Name), Zone: ZoneOf(h), Shard: ShardOf(h.Name, spec.Shards), Host: h, Attempt: 1}
			if stop != "" {
				ops = append(ops, clientv3.OpPut(q.keys.Result(t.Batch, t.ID), mustJSON(Result{
					Host: h.Name, Status: stop, Message: stopMessage(stop), FinishedAt: now})))
				continue
			}
			ops = append(ops, clientv3.OpPut(q.queueKey(spec, t), mustJSON(t)))
		}
		end := done + n
		wake := WakeSharded
		if end == to-from {
			wake = "" // the lane's last: claimers look behind their cursors once too
		}
		ops = append(ops, clientv3.OpPut(progKey, strconv.Itoa(end)), clientv3.OpPut(q.keys.Wake(), wake))

		progressIs := clientv3.Compare(clientv3.Value(progKey), "=", strconv.Itoa(done))
		if done == 0 {
			progressIs = clientv3.Compare(clientv3.CreateRevision(progKey), "=", 0)
		}
		resp, err := q.txn(ctx, "shard").
			If(fence.Cmp(), progressIs, // still the leader; nobody wrote this range
				clientv3.Compare(clientv3.ModRevision(stopKey), "=", stopRev)). // stopped (or not) as read
			Then(ops...).
			Commit()
		if err != nil {
			return fmt.Errorf("shard batch %s lane %d hosts %d-%d: %w", spec.ID, lane, done, end, err)
		}
		if !resp.Succeeded {
			st, rev, err := q.stopState(ctx, spec.ID)
			if err != nil {
				return err
			}
			if rev != stopRev {
				stop, stopRev = st, rev // write the chunk again as the stop now has it
				continue
			}
			return q.whyRejected(ctx, fence)
		}
		hosts, done = hosts[n:], end
	}
	return nil
}

// chunkIndex says where each inventory chunk of a batch starts, so that
// hosts can be read from any index without loading those before it.
type chunkIndex struct {
	q     *Queue
	spec  BatchSpec
	start []int // start[c] is the index of chunk c's first host; start[len] = hosts
}

// chunkIndex counts the hosts of each chunk of a batch's inventory,
// reading them one at a time without decoding the hosts.
func (q *Queue) chunkIndex(ctx context.Context, spec BatchSpec) (*chunkIndex, error) {
	idx := &chunkIndex{q: q, spec: spec, start: make([]int, 0, spec.Chunks+1)}
	if spec.Chunks == 1 { // all its hosts: nothing to count
		idx.start = append(idx.start, 0, spec.Hosts)
		return idx, nil
	}
	n := 0
	for c := range spec.Chunks {
		idx.start = append(idx.start, n)
		var raw []json.RawMessage
		if err := q.readChunk(ctx, spec, c, &raw); err != nil {
			return nil, err
		}
		n += len(raw)
	}
	if n != spec.Hosts {
		return nil, fmt.Errorf("%w: batch %s has %d hosts stored, spec says %d", ErrBadValue, spec.ID, n, spec.Hosts)
	}
	idx.start = append(idx.start, n)
	return idx, nil
}

func (q *Queue) readChunk(ctx context.Context, spec BatchSpec, c int, v any) error {
	key := q.keys.BatchHostChunk(spec.ID, spec.Nonce, c)
	resp, err := q.cli.Get(ctx, key)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("%w: inventory chunk %s is missing", ErrBadValue, key)
	}
	return decodeKV(resp.Kvs[0], v)
}

// read returns the hosts from index i to the end of the chunk that holds
// it, or to index to if that comes first.
func (idx *chunkIndex) read(ctx context.Context, i, to int) ([]inventory.Host, error) {
	c := sort.SearchInts(idx.start, i+1) - 1
	var hosts []inventory.Host
	if err := idx.q.readChunk(ctx, idx.spec, c, &hosts); err != nil {
		return nil, err
	}
	lo, hi := i-idx.start[c], min(len(hosts), to-idx.start[c])
	if lo >= hi {
		return nil, fmt.Errorf("%w: batch %s inventory chunk %d does not hold host %d", ErrBadValue, idx.spec.ID, c, i)
	}
	return hosts[lo:hi], nil
}

func stopMessage(s Status) string {
	if s == StatusCancelled {
		return "batch cancelled before this host ran"
	}
	return "batch stopped early: too many failures"
}

// fenceLost is what a leader transaction that did not succeed means for
// its caller: ErrNotLeader when the fence no longer holds, nil when it
// lost only a race the caller tolerates (or succeeded).
func (q *Queue) fenceLost(ctx context.Context, fence Fence, succeeded bool) error {
	if succeeded {
		return nil
	}
	if err := q.whyRejected(ctx, fence); err == ErrNotLeader {
		return err
	}
	return nil
}

// whyRejected explains a failed fenced transaction: ErrNotLeader if the
// fence no longer holds, otherwise ErrConflict, which the caller may retry.
func (q *Queue) whyRejected(ctx context.Context, fence Fence) error {
	resp, err := q.cli.Get(ctx, fence.Key)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != fence.Rev {
		return ErrNotLeader
	}
	return ErrConflict
}

// RecoverGroup requeues the unfinished tasks of a group whose claim is gone
// (the worker's lease expired, it released the group, or the scheduler
// revoked it), each as its next attempt, or ends them dead when out of
// attempts. The claim being gone freezes the group: no worker can write
// for it any more, so one transaction, compared on the group's records,
// moves every unfinished task. It returns how many were requeued and how
// many ended dead.
func (q *Queue) RecoverGroup(ctx context.Context, fence Fence, group string, policies func(batch string) (Policy, error), reason string, now time.Time) (requeued, dead int, err error) {
	runKey, doneKey, claimKey := q.keys.RunningGroup(group), q.keys.DoneGroup(group), q.keys.Claim(group)
	resp, err := q.txn(ctx, "read").Then(clientv3.OpGet(runKey), clientv3.OpGet(doneKey), clientv3.OpGet(claimKey)).Commit()
	if err != nil {
		return 0, 0, err
	}
	runKVs, doneKVs, claimKVs := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs, resp.Responses[2].GetResponseRange().Kvs
	if len(runKVs) == 0 || len(claimKVs) > 0 {
		return 0, 0, nil // finished, or still held
	}
	cmps := []clientv3.Cmp{
		fence.Cmp(),
		clientv3.Compare(clientv3.CreateRevision(claimKey), "=", 0),
		clientv3.Compare(clientv3.ModRevision(runKey), "=", runKVs[0].ModRevision),
		clientv3.Compare(clientv3.ModRevision(doneKey), "=", modRev(doneKVs)),
	}
	ops := []clientv3.Op{clientv3.OpDelete(runKey), clientv3.OpDelete(doneKey), clientv3.OpPut(q.keys.Wake(), "")}
	var run Running
	if err := decodeKV(runKVs[0], &run); err != nil {
		// Nothing can be requeued from a record that does not decode:
		// move it aside so that it is seen, and stop tripping over it.
		return 0, 0, q.quarantine(ctx, fence, runKVs[0], err)
	}
	done := parseDone(doneKVs)
	released := len(doneKVs) > 0 && strings.HasPrefix(string(doneKVs[0].Value), releasedMark)
	// A task whose result exists is done, whatever the done set says: a
	// commit whose answer the worker lost may have landed after it wrote
	// the set it knew (releasing the group, say). Requeueing it would run
	// it again and write its result twice. The write compares that the
	// rest still have none.
	var open []int
	for i := range run.Tasks {
		if !done[i] {
			open = append(open, i)
		}
	}
	if len(open) > 0 {
		reads := make([]clientv3.Op, len(open))
		for j, i := range open {
			t := run.Tasks[i]
			reads[j] = clientv3.OpGet(q.keys.Result(t.Batch, t.ID), clientv3.WithKeysOnly())
		}
		rr, err := q.txn(ctx, "read").Then(reads...).Commit()
		if err != nil {
			return 0, 0, err
		}
		for j, i := range open {
			t := run.Tasks[i]
			if len(rr.Responses[j].GetResponseRange().Kvs) > 0 {
				done[i] = true
				continue
			}
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(q.keys.Result(t.Batch, t.ID)), "=", 0))
		}
	}
	for i, t := range run.Tasks {
		if done[i] {
			continue
		}
		if released {
			// Given back unstarted or cut short by a draining worker: the
			// same attempt runs again elsewhere.
			ops = append(ops, clientv3.OpPut(q.keys.ReadyKey(t), mustJSON(t)))
			requeued++
			continue
		}
		pol, err := policies(t.Batch)
		if err != nil {
			return 0, 0, err
		}
		lost := Attempt{Attempt: t.Attempt, Round: t.Round, Status: StatusError, Message: reason, Worker: run.Worker, FinishedAt: now.UTC(),
			DurationMS: now.Sub(run.ClaimedAt).Milliseconds()}
		t.History = append(t.History, lost)
		if t.Attempt >= pol.MaxAttempts {
			ops = append(ops, clientv3.OpPut(q.keys.Result(t.Batch, t.ID), mustJSON(Result{
				Host: t.Host.Name, Status: StatusDead, Attempts: t.Attempt, Round: t.Round, Worker: run.Worker, FinishedAt: now.UTC(),
				Message: fmt.Sprintf("out of attempts (%d): %s", t.Attempt, reason), History: t.History[:len(t.History)-1]})))
			dead++
			continue
		}
		t.Attempt++
		t.NotBefore = time.Time{}
		ops = append(ops, clientv3.OpPut(q.keys.ReadyKey(t), mustJSON(t)))
		requeued++
	}
	tr, err := q.txn(ctx, "recover").If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, 0, err
	}
	if !tr.Succeeded {
		if err := q.fenceLost(ctx, fence, false); err != nil {
			return 0, 0, err
		}
		return 0, 0, nil // changed under us: the next event or sweep retries
	}
	return requeued, dead, nil
}

func modRev(kvs []*mvccpb.KeyValue) int64 {
	if len(kvs) == 0 {
		return 0
	}
	return kvs[0].ModRevision
}

// parseDone reads a done set: comma-separated task indexes, after
// releasedMark when the worker gave the group back.
func parseDone(kvs []*mvccpb.KeyValue) map[int]bool {
	out := map[int]bool{}
	if len(kvs) == 0 {
		return out
	}
	v, _ := strings.CutPrefix(string(kvs[0].Value), releasedMark)
	for _, f := range strings.Split(v, ",") {
		if i, err := strconv.Atoi(f); err == nil {
			out[i] = true
		}
	}
	return out
}

// Revoke deletes a group's claim, as the scheduler does when the group has
// overrun its deadline: the worker's completions are then rejected, and
// RecoverGroup requeues the group.
func (q *Queue) Revoke(ctx context.Context, fence Fence, group string, claimRev int64) (bool, error) {
	key := q.keys.Claim(group)
	resp, err := q.txn(ctx, "revoke").
		If(fence.Cmp(), clientv3.Compare(clientv3.CreateRevision(key), "=", claimRev)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, q.fenceLost(ctx, fence, resp.Succeeded)
}

// Promote moves delayed tasks whose backoff has passed to their ready
// queue, in one transaction for up to 60 of them. Each move holds only if
// the delayed record is as listed.
func (q *Queue) Promote(ctx context.Context, fence Fence, due []*mvccpb.KeyValue) (int, error) {
	moved := 0
	for len(due) > 0 {
		n := min(len(due), chunk)
		cmps := []clientv3.Cmp{fence.Cmp()}
		ops := []clientv3.Op{clientv3.OpPut(q.keys.Wake(), "")}
		for _, kv := range due[:n] {
			var t Task
			if err := decodeKV(kv, &t); err != nil {
				if err := q.quarantine(ctx, fence, kv, err); err != nil {
					return moved, err
				}
				continue
			}
			t.NotBefore = time.Time{}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
			ops = append(ops, clientv3.OpDelete(string(kv.Key)), clientv3.OpPut(q.keys.ReadyKey(t), mustJSON(t)))
		}
		due = due[n:]
		resp, err := q.txn(ctx, "promote").If(cmps...).Then(ops...).Commit()
		if err != nil {
			return moved, err
		}
		if !resp.Succeeded {
			if err := q.fenceLost(ctx, fence, false); err != nil {
				return moved, err
			}
			continue // some were moved or cancelled meanwhile: the watch brings the rest again
		}
		moved += (len(ops) - 1) / 2
	}
	return moved, nil
}

// StopPending ends a stopped batch's tasks that have not started (ready or
// delayed) with status (cancelled or skipped), up to 60 per transaction.
// It returns how many it ended.
func (q *Queue) StopPending(ctx context.Context, fence Fence, spec BatchSpec, status Status) (int, error) {
	ended := 0
	// A task claimed between the listing and a transaction makes that
	// transaction fail as a whole: list again and end the rest.
	for pass := 0; pass < 10; pass++ {
		n, conflicts, err := q.stopPendingPass(ctx, fence, spec, status)
		ended += n
		if err != nil || !conflicts {
			return ended, err
		}
	}
	return ended, nil
}

func (q *Queue) stopPendingPass(ctx context.Context, fence Fence, spec BatchSpec, status Status) (ended int, conflicts bool, err error) {
	var pending []*mvccpb.KeyValue
	collect := func(kv *mvccpb.KeyValue) error {
		pending = append(pending, kv)
		return nil
	}
	for _, p := range append(q.readyPrefixes(spec), q.keys.BatchDelayed(spec.ID), q.keys.BatchHeld(spec.ID)) {
		if _, err := q.rangeAll(ctx, p, collect); err != nil {
			return 0, false, err
		}
	}
	now := time.Now().UTC()
	for len(pending) > 0 {
		n := min(len(pending), chunk)
		cmps := []clientv3.Cmp{fence.Cmp()}
		var ops []clientv3.Op
		for _, kv := range pending[:n] {
			k := string(kv.Key)
			task := k[strings.LastIndexByte(k, '/')+1:]
			var t Task
			decodeKV(kv, &t) // a malformed record still ends: the host name falls back to the task ID
			host := t.Host.Name
			if host == "" {
				host = task
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", kv.ModRevision))
			ops = append(ops, clientv3.OpDelete(k), clientv3.OpPut(q.keys.Result(spec.ID, task), mustJSON(Result{
				Host: host, Status: status, Attempts: t.Attempt - 1, Round: t.Round, Message: stopMessage(status), FinishedAt: now, History: t.History})))
		}
		pending = pending[n:]
		resp, err := q.txn(ctx, "stop").If(cmps...).Then(ops...).Commit()
		if err != nil {
			return ended, false, err
		}
		if !resp.Succeeded {
			if err := q.fenceLost(ctx, fence, false); err != nil {
				return ended, false, err
			}
			conflicts = true
			continue
		}
		ended += len(ops) / 2
	}
	return ended, conflicts, nil
}

// StopBatch records that a batch stops early, if it is not stopped yet.
func (q *Queue) StopBatch(ctx context.Context, fence Fence, batch string, why Status) error {
	key := q.keys.BatchStop(batch)
	resp, err := q.txn(ctx, "stop").
		If(fence.Cmp(), clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(why))).
		Commit()
	if err != nil {
		return err
	}
	return q.fenceLost(ctx, fence, resp.Succeeded)
}

// Finish writes a batch's summary once, drops it from the active index and
// records it as finished for retention.
func (q *Queue) Finish(ctx context.Context, fence Fence, batch string, s Summary) error {
	sumKey := q.keys.BatchSummary(batch)
	resp, err := q.txn(ctx, "finish").
		If(fence.Cmp(), clientv3.Compare(clientv3.CreateRevision(sumKey), "=", 0)). // written exactly once
		Then(
			clientv3.OpPut(sumKey, mustJSON(s)),
			clientv3.OpDelete(q.keys.ActiveBatch(batch)),
			clientv3.OpPut(q.keys.FinishedBatch(batch), s.FinishedAt.UTC().Format(time.RFC3339Nano)),
			clientv3.OpDelete(q.keys.Cancel(batch)),
		).
		Commit()
	if err != nil {
		return err
	}
	return q.fenceLost(ctx, fence, resp.Succeeded)
}

// Purge deletes everything a finished batch left in etcd.
func (q *Queue) Purge(ctx context.Context, fence Fence, batch string) error {
	resp, err := q.txn(ctx, "purge").
		If(fence.Cmp(), clientv3.Compare(clientv3.CreateRevision(q.keys.ActiveBatch(batch)), "=", 0)).
		Then(q.purgeOps(batch)...).
		Commit()
	if err != nil {
		return err
	}
	return q.fenceLost(ctx, fence, resp.Succeeded)
}

// purgeOps deletes every record of a batch.
func (q *Queue) purgeOps(batch string) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpDelete(q.keys.Batch(batch), clientv3.WithPrefix()),
		clientv3.OpDelete(q.keys.BatchResults(batch), clientv3.WithPrefix()),
		clientv3.OpDelete(q.keys.Cancel(batch)),
		clientv3.OpDelete(q.keys.FinishedBatch(batch)),
	}
}

// Tally counts results per status over a batch's results. A result that
// does not decode counts as an error: it still ends its task.
func (q *Queue) Tally(ctx context.Context, batch string) (map[string]Status, error) {
	out := map[string]Status{}
	_, err := q.rangeAll(ctx, q.keys.BatchResults(batch), func(kv *mvccpb.KeyValue) error {
		if task, st, ok := q.resultStatus(kv); ok {
			out[task] = st
		}
		return nil
	})
	return out, err
}

// SummaryOf builds a summary from a tally.
func SummaryOf(total int, tally map[string]Status, now time.Time) Summary {
	return SummaryOfCounts(total, CountsOf(tally), now)
}

// CountsOf counts a tally's results per status.
func CountsOf(tally map[string]Status) Counts {
	c := Counts{}
	for _, st := range tally {
		c[st]++
	}
	return c
}

// SummaryOfCounts is SummaryOf from the results' counts per status.
func SummaryOfCounts(total int, c Counts, now time.Time) Summary {
	return Summary{Total: total, Counts: map[Status]int(maps.Clone(c)), FinishedAt: now.UTC()}
}

// quarantine moves a malformed value aside under Keys.Quarantine, so that
// it is kept for inspection and no longer trips its readers.
func (q *Queue) quarantine(ctx context.Context, fence Fence, kv *mvccpb.KeyValue, why error) error {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)}
	if fence.Key != "" {
		cmps = append(cmps, fence.Cmp())
	}
	_, err := q.txn(ctx, "quarantine").If(cmps...).
		Then(clientv3.OpDelete(string(kv.Key)), clientv3.OpPut(q.keys.Quarantine(string(kv.Key)), mustJSON(map[string]string{
			"value": string(kv.Value), "error": why.Error(), "at": time.Now().UTC().Format(time.RFC3339)}))).
		Commit()
	return err
}

// GroupInfo is a claimed group as the sweep sees it.
type GroupInfo struct {
	ID       string
	Worker   string
	Deadline time.Time
	ClaimRev int64 // 0 when the claim is gone
}

// Groups lists every claimed group with its claim's revision. A running
// record that does not decode is reported with a zero deadline, so that it
// is recovered (and quarantined) rather than ignored.
func (q *Queue) Groups(ctx context.Context) ([]GroupInfo, error) {
	claims := map[string]int64{}
	rev, err := q.rangeAll(ctx, q.keys.Claims(), func(kv *mvccpb.KeyValue) error {
		if g, err := q.keys.ParseGroup(string(kv.Key)); err == nil {
			claims[g] = kv.CreateRevision
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []GroupInfo
	_, err = q.rangeAllAt(ctx, q.keys.Running(), rev, func(kv *mvccpb.KeyValue) error {
		g, err := q.keys.ParseGroup(string(kv.Key))
		if err != nil {
			return nil
		}
		var run Running
		decodeKV(kv, &run)
		out = append(out, GroupInfo{ID: g, Worker: run.Worker, Deadline: run.Deadline, ClaimRev: claims[g]})
		return nil
	})
	return out, err
}

// CancelRequested reports whether a batch has a cancel marker. The
// marker's key is read exactly: as a prefix, batch b1's would match b10's.
func (q *Queue) CancelRequested(ctx context.Context, batch string) (bool, error) {
	resp, err := q.cli.Get(ctx, q.keys.Cancel(batch), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}

// BatchState is what the leader reads of a batch when it takes it on.
type BatchState struct {
	Spec      BatchSpec
	Stop      Status // why it was stopped early, or ""
	Cancelled bool   // a cancel was requested
}

// LoadBatchState reads a batch's spec, stop reason and cancel marker in
// one round trip, at one revision.
func (q *Queue) LoadBatchState(ctx context.Context, batch string) (BatchState, error) {
	resp, err := q.txn(ctx, "read").Then(
		clientv3.OpGet(q.keys.BatchSpec(batch)),
		clientv3.OpGet(q.keys.BatchStop(batch)),
		clientv3.OpGet(q.keys.Cancel(batch), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return BatchState{}, err
	}
	var st BatchState
	if st.Spec, err = specOf(batch, resp.Responses[0].GetResponseRange().Kvs); err != nil {
		return BatchState{}, err
	}
	if stops := resp.Responses[1].GetResponseRange().Kvs; len(stops) > 0 {
		st.Stop = Status(stops[0].Value)
	}
	st.Cancelled = resp.Responses[2].GetResponseRange().Count > 0
	return st, nil
}

// FinishedBefore lists batches that finished before t.
func (q *Queue) FinishedBefore(ctx context.Context, t time.Time) ([]string, error) {
	var out []string
	_, err := q.rangeAll(ctx, q.keys.Finished(), func(kv *mvccpb.KeyValue) error {
		at, err := time.Parse(time.RFC3339Nano, string(kv.Value))
		if err != nil || at.Before(t) {
			out = append(out, string(kv.Key)[len(q.keys.Finished()):])
		}
		return nil
	})
	return out, err
}

// Lost returns the tasks of a sharded batch that are nowhere: not ready,
// delayed, inside a readable running record, or finished. Every move is one
// transaction and the listing is read at one revision, so a task missing
// from it is gone, not in transit: its record was malformed and
// quarantined, or deleted by hand.
func (q *Queue) Lost(ctx context.Context, spec BatchSpec) ([]string, error) {
	hosts, err := q.LoadHosts(ctx, spec)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(hosts))
	last := func(kv *mvccpb.KeyValue) error {
		k := string(kv.Key)
		seen[k[strings.LastIndexByte(k, '/')+1:]] = true
		return nil
	}
	rev, err := q.rangeSplit(ctx, q.keys.BatchResults(spec.ID), last)
	if err != nil {
		return nil, err
	}
	prefixes := append(q.readyPrefixes(spec), q.keys.BatchDelayed(spec.ID), q.keys.BatchHeld(spec.ID))
	for _, p := range prefixes {
		if _, err := q.rangeAllAt(ctx, p, rev, last); err != nil {
			return nil, err
		}
	}
	_, err = q.rangeAllAt(ctx, q.keys.Running(), rev, func(kv *mvccpb.KeyValue) error {
		var run Running
		if decodeKV(kv, &run) != nil {
			return nil
		}
		for _, t := range run.Tasks {
			if t.Batch == spec.ID {
				seen[t.ID] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var lost []string
	for _, h := range hosts {
		if id := TaskID(h.Name); !seen[id] {
			lost = append(lost, id)
		}
	}
	return lost, nil
}

// EndLost commits a dead result for each lost task that still has none.
func (q *Queue) EndLost(ctx context.Context, fence Fence, batch string, tasks []string, reason string) (int, error) {
	ended := 0
	now := time.Now().UTC()
	for len(tasks) > 0 {
		n := min(len(tasks), chunk)
		cmps := []clientv3.Cmp{fence.Cmp()}
		var ops []clientv3.Op
		for _, id := range tasks[:n] {
			key := q.keys.Result(batch, id)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			ops = append(ops, clientv3.OpPut(key, mustJSON(Result{Host: id, Status: StatusDead, Message: reason, FinishedAt: now})))
		}
		tasks = tasks[n:]
		resp, err := q.txn(ctx, "end_lost").If(cmps...).Then(ops...).Commit()
		if err != nil {
			return ended, err
		}
		if !resp.Succeeded {
			if err := q.fenceLost(ctx, fence, false); err != nil {
				return ended, err
			}
			continue
		}
		ended += len(ops)
	}
	return ended, nil
}

// readyPrefixes are the prefixes under which a batch's ready keys live: one
// per zone and shard.
func (q *Queue) readyPrefixes(spec BatchSpec) []string {
	var out []string
	for _, z := range spec.Zones {
		for s := 0; s < spec.Shards; s++ {
			out = append(out, q.keys.ReadyShard(z, s)+spec.ID+"/")
		}
	}
	return out
}

// queueKey is where a newly sharded or re-run task goes: held back when the
// batch caps its parallelism, ready otherwise.
func (q *Queue) queueKey(spec BatchSpec, t Task) string {
	if spec.Policy.Parallel > 0 {
		return q.keys.HeldTask(t.Batch, t.ID)
	}
	return q.keys.ReadyKey(t)
}

// HeldCount is how many of a batch's tasks are held back by its
// --parallel cap.
func (q *Queue) HeldCount(ctx context.Context, batch string) (int, error) {
	n, err := q.count(ctx, q.keys.BatchHeld(batch))
	return int(n), err
}

// ReleaseHeld moves up to n held tasks of a batch to their ready queues, in
// one transaction compared on each. It returns how many it moved.
func (q *Queue) ReleaseHeld(ctx context.Context, fence Fence, spec BatchSpec, n int) (int, error) {
	n = min(n, chunk)
	if n <= 0 {
		return 0, nil
	}
	prefix := q.keys.BatchHeld(spec.ID)
	resp, err := q.cli.Get(ctx, prefix, clientv3.WithRange(prefixEnd(prefix)), clientv3.WithLimit(int64(n)))
	if err != nil || len(resp.Kvs) == 0 {
		return 0, err
	}
	cmps := []clientv3.Cmp{fence.Cmp()}
	ops := []clientv3.Op{clientv3.OpPut(q.keys.Wake(), "")}
	moved := 0
	for _, kv := range resp.Kvs {
		var t Task
		if err := decodeKV(kv, &t); err != nil {
			if err := q.quarantine(ctx, fence, kv, err); err != nil {
				return 0, err
			}
			continue
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
		ops = append(ops, clientv3.OpDelete(string(kv.Key)), clientv3.OpPut(q.keys.ReadyKey(t), mustJSON(t)))
		moved++
	}
	tr, err := q.txn(ctx, "release_held").If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, err
	}
	if !tr.Succeeded {
		return 0, q.whyRejected(ctx, fence)
	}
	return moved, nil
}
