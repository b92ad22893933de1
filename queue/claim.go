package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxClaim is the most tasks one claim transaction takes: a compare and a
// delete per task, plus the group's claim and running records, stay within
// etcd's 128 operations per branch.
const MaxClaim = 64

// Ready is a claimable task as a worker saw it.
type Ready struct {
	Task   Task
	Key    string
	ModRev int64 // the ready key's revision when listed; the claim compares it

	value []byte // the ready key's value as listed: Task's JSON
}

// BadValue is a key whose value did not decode, found while listing.
type BadValue struct {
	KV  *mvccpb.KeyValue
	Err error
}

// Key is the malformed value's key.
func (b BadValue) Key() string { return string(b.KV.Key) }

// ListReady returns up to limit claimable tasks of a zone, trying its
// shards in the order given (a worker's assigned shards first), so that
// workers rarely race for the same keys. Each range covers one shard only:
// etcd counts every key in a range even when a limit is set, so a range
// over the whole zone would cost as much as the queue is long. The shards
// are read together, in one transaction of ranges (one round trip, at one
// revision, so a listing never sees half of a sharding transaction).
// Values that do not decode are returned apart.
func (q *Queue) ListReady(ctx context.Context, zone string, order []int, limit int) ([]Ready, []BadValue, error) {
	return q.ListReadyFrom(ctx, nil, zone, order, limit)
}

// ReadyCursor is where a claimer's listings of each shard resume. etcd
// keeps a deleted key in its index (a tombstone) until compaction and
// visits it in every range that covers it, so a range from a shard's start
// would walk every task claimed from it since: near the end of a large
// batch a listing would cost as much as the batch. The cursor starts each
// shard's range just after the last key listed there and wraps around to
// the shard's start when it reaches the end, so every key is still seen;
// it remembers the shards a listing found empty and skips them until
// Reset, and how many keys each shard held, so that a listing reads only
// as many shards as it likely needs. Keys it has listed are not listed
// again until Forget: a claimer may list its next group while the claim
// of the last one is in flight. A ReadyCursor is owned by one goroutine.
type ReadyCursor struct {
	next  map[int]string  // shard -> the key its next range starts at
	empty map[int]bool    // shards found empty since the last Reset
	found map[int]int     // shard -> keys the last listing of it found
	full  map[int]bool    // shards whose last range stopped at its limit
	taken map[string]bool // keys listed and not yet forgotten
}

// NewReadyCursor returns a cursor at the start of every shard.
func NewReadyCursor() *ReadyCursor {
	return &ReadyCursor{next: map[int]string{}, empty: map[int]bool{}, found: map[int]int{}, full: map[int]bool{}, taken: map[string]bool{}}
}

// Reset makes the next listing look at every shard again. Call it when
// tasks may have become ready (the leader bumps Keys.Wake in every
// transaction that makes a task ready), and now and then in any case.
func (c *ReadyCursor) Reset() { clear(c.empty) }

// Forget lets listings return ready's keys again: call it once their
// claim has returned, whatever it took.
func (c *ReadyCursor) Forget(ready []Ready) {
	for _, r := range ready {
		delete(c.taken, r.Key)
	}
}

// maxListRanges is the most ranges one listing transaction holds, within
// etcd's 128 operations per branch.
const maxListRanges = 64

// shardRange is one range of a listing: a shard from a key to another.
type shardRange struct {
	shard    int
	from, to string
	wrap     bool // the part of the shard before the cursor
	limit    int  // the most keys it reads
}

// ListReadyFrom is ListReady resuming each shard where cur left it (nil:
// from each shard's start), and moving cur on. With a cursor it reads the
// shards it expects to need to fill twice limit (those not found empty, each
// counted at what the last listing left there, one not seen yet at one
// key), in one
// transaction, and reads further shards in another only when that found
// nothing; without one, every shard in order. Either way the ranges go out
// together, at most maxListRanges to a transaction.
func (q *Queue) ListReadyFrom(ctx context.Context, cur *ReadyCursor, zone string, order []int, limit int) ([]Ready, []BadValue, error) {
	out := make([]Ready, 0, max(0, min(limit, MaxClaim)))
	var bad []BadValue
	var rev int64
	for len(order) > 0 && len(out) < limit {
		var plan []shardRange
		// Plan for twice what is needed: a shard's count is from the last
		// listing, and other workers claim from it meanwhile. A range
		// more costs some reading; a listing short of its limit costs a
		// round trip.
		// Each range reads what the shards before it are not expected to
		// give, and at least a quarter of limit, so that the listing
		// reads about limit keys when the counts hold.
		need := 2 * (limit - len(out))
		expected := 0
		for len(order) > 0 && need > 0 && len(plan)+2 <= maxListRanges {
			shard := order[0]
			order = order[1:]
			prefix := q.keys.ReadyShard(zone, shard)
			end := prefixEnd(prefix)
			if cur == nil {
				plan = append(plan, shardRange{shard: shard, from: prefix, to: end})
				continue
			}
			if cur.empty[shard] {
				continue
			}
			from := cur.next[shard]
			if from <= prefix || from >= end {
				from = prefix
			}
			// From the cursor to the shard's end, then from its start back
			// to the cursor.
			// Keys this cursor handed out are read but skipped: room for
			// them too (the cursor may have wrapped to before them).
			n := max(limit-len(out)-expected, limit/4, 1) + min(len(cur.taken), limit)
			plan = append(plan, shardRange{shard: shard, from: from, to: end, limit: n})
			if from != prefix && !cur.full[shard] {
				plan = append(plan, shardRange{shard: shard, from: prefix, to: from, wrap: true, limit: n})
			}
			est := 1 // not seen yet: read it, and the shards after it
			switch c, seen := cur.found[shard]; {
			case cur.full[shard]:
				est = limit
			case seen:
				est = c
			}
			need -= est
			expected += est
		}
		if len(plan) == 0 {
			break
		}
		ops := make([]clientv3.Op, len(plan))
		for i, r := range plan {
			n := int64(limit - len(out))
			if cur != nil {
				n = int64(r.limit)
			}
			opts := []clientv3.OpOption{clientv3.WithRange(r.to), clientv3.WithLimit(n)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			ops[i] = clientv3.OpGet(r.from, opts...)
		}
		resp, err := q.txn(ctx, "list_ready").Then(ops...).Commit()
		if err != nil {
			return nil, nil, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		found, left := map[int]int{}, map[int]int{}
		for i, r := range plan {
			rr := resp.Responses[i].GetResponseRange()
			if cur != nil && !r.wrap {
				cur.full[r.shard] = rr.More
			}
			for _, kv := range rr.Kvs {
				found[r.shard]++
				if cur != nil && cur.taken[string(kv.Key)] {
					continue
				}
				if len(out) >= limit {
					left[r.shard]++ // there for the next listing
					continue
				}
				var t Task
				if err := decodeKV(kv, &t); err != nil {
					bad = append(bad, BadValue{KV: kv, Err: err})
					continue
				}
				out = append(out, Ready{Task: t, Key: string(kv.Key), ModRev: kv.ModRevision, value: kv.Value})
				if cur != nil {
					cur.taken[string(kv.Key)] = true
					// Resume past the last key listed, wherever it was.
					cur.next[r.shard] = string(kv.Key) + "\x00"
				}
			}
		}
		if cur == nil {
			continue
		}
		if len(out) > 0 {
			order = nil // a listing costs one round trip when it finds tasks
		}
		wrapped := map[int]bool{}
		for _, r := range plan {
			if r.wrap {
				wrapped[r.shard] = true
			}
		}
		for _, r := range plan {
			if r.wrap {
				continue
			}
			cur.found[r.shard] = left[r.shard]
			switch {
			case found[r.shard] > 0:
			case r.from == q.keys.ReadyShard(zone, r.shard) || wrapped[r.shard]:
				cur.empty[r.shard] = true // the whole shard was read
			default:
				// Nothing past the cursor, and the part before it was not
				// read: start there next time.
				delete(cur.next, r.shard)
				cur.full[r.shard] = false
			}
		}
	}
	return out, bad, nil
}

// Group is a set of tasks claimed together by one worker, under one claim
// key. Its methods are not safe for concurrent use: one goroutine of the
// worker (its committer) owns a group's bookkeeping.
type Group struct {
	ID       string
	Running  Running
	ClaimRev int64 // the claim key's create revision: the fencing token for completions
	done     map[int]bool
	// doneRev is the done key's mod revision as this worker last wrote or
	// read it (0: none yet). Each commit holds only while it is unchanged,
	// so a commit whose answer was lost and that etcd applies late (a
	// request queued at a member that hung, or a proposal a new etcd
	// leader commits after the old one died) cannot land after the worker
	// committed the same outcomes again: one of the two fails its compare.
	doneRev int64
}

// Claim takes as many of ready (at most MaxClaim) as it can, as one group,
// in one transaction per round: every ready key must be unchanged since it
// was listed; then all are deleted, the group's claim key is put bound to
// lease, and its running record (the tasks, durable) is put beside it.
// When another worker took some, a read finds which are still there and
// the next round claims those. deadline gives each task's attempt
// deadline. It returns nil when nothing could be claimed.
func (q *Queue) Claim(ctx context.Context, lease clientv3.LeaseID, worker, group string, ready []Ready, now time.Time, deadline func(Task) time.Time) (*Group, error) {
	if len(ready) > MaxClaim {
		ready = ready[:MaxClaim]
	}
	claimKey, runKey := q.keys.Claim(group), q.keys.RunningGroup(group)
	for len(ready) > 0 {
		run := Running{Worker: worker, ClaimedAt: now.UTC()}
		cmps := make([]clientv3.Cmp, 0, len(ready)+1)
		then := make([]clientv3.Op, 0, len(ready)+2)
		run.Tasks = make([]Task, 0, len(ready))
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(claimKey), "=", 0))
		for _, r := range ready {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(r.Key), "=", r.ModRev)) // still ready, as listed
			then = append(then, clientv3.OpDelete(r.Key))
			run.Tasks = append(run.Tasks, r.Task)
			if d := deadline(r.Task); d.After(run.Deadline) {
				run.Deadline = d.UTC()
			}
		}
		then = append(then,
			clientv3.OpPut(claimKey, mustJSON(Claim{Worker: worker, ClaimedAt: run.ClaimedAt}), clientv3.WithLease(lease)),
			clientv3.OpPut(runKey, runningValue(run, ready)),
		)
		// No Else branch: etcd logs and applies the whole request, Else
		// included, and most claims succeed. A claim that fails reads
		// which keys changed afterwards instead.
		resp, err := q.txn(ctx, "claim").If(cmps...).Then(then...).Commit()
		if err != nil {
			return nil, fmt.Errorf("claim %d tasks: %w", len(ready), err)
		}
		if resp.Succeeded {
			return &Group{ID: group, Running: run, ClaimRev: resp.Header.Revision, done: map[int]bool{}}, nil
		}
		left, err := q.stillReady(ctx, claimKey, ready)
		if err != nil {
			return nil, fmt.Errorf("claim %d tasks: %w", len(ready), err)
		}
		if len(left) == len(ready) {
			return nil, fmt.Errorf("claim group %s: its claim key already exists; group IDs must be unique", group)
		}
		ready = left
	}
	return nil, nil
}

// stillReady returns those of ready whose key is still at the listed
// revision, after a claim of them failed. A key's mod revision only grows,
// so a key that failed the claim's compare fails it here too, and the
// next round is not tried with all of them again. When the claim key
// exists, which only a reused group ID explains, it returns ready whole.
func (q *Queue) stillReady(ctx context.Context, claimKey string, ready []Ready) ([]Ready, error) {
	ops := make([]clientv3.Op, 0, len(ready)+1)
	ops = append(ops, clientv3.OpGet(claimKey, clientv3.WithKeysOnly()))
	for _, r := range ready {
		ops = append(ops, clientv3.OpGet(r.Key, clientv3.WithKeysOnly()))
	}
	resp, err := q.txn(ctx, "read").Then(ops...).Commit()
	if err != nil {
		return nil, err
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
		return ready, nil
	}
	left := ready[:0]
	for i, r := range ready {
		kvs := resp.Responses[i+1].GetResponseRange().Kvs
		if len(kvs) == 1 && kvs[0].ModRevision == r.ModRev {
			left = append(left, r)
		}
	}
	return left, nil
}

// runningValue is mustJSON(run) with the JSON of each task as it was
// listed rather than encoded again: a claim writes every task it takes
// into its running record, and encoding them was a tenth of a worker's
// time. ready are run.Tasks, in order.
func runningValue(run Running, ready []Ready) string {
	tasks := run.Tasks
	run.Tasks = []Task{}
	head := mustJSON(run)
	const tail = `"tasks":[]}`
	if !strings.HasSuffix(head, tail) {
		run.Tasks = tasks
		return mustJSON(run)
	}
	var b strings.Builder
	b.WriteString(head[:len(head)-2])
	for i, r := range ready {
		if i > 0 {
			b.WriteByte(',')
		}
		if r.value != nil {
			b.Write(r.value)
		} else {
			b.WriteString(mustJSON(tasks[i]))
		}
	}
	b.WriteString("]}")
	return b.String()
}

// Outcome is what a worker reports for one task of a group: a final Result,
// or a Retry (the task's next attempt, with NotBefore set).
type Outcome struct {
	Group  *Group
	Index  int // the task's index in Group.Running.Tasks
	Result *Result
	Retry  *Task
	// GivenBack marks a Retry of a task that never started: the worker
	// gives it back on the same attempt.
	GivenBack bool
	// Drop ends the task in its group without writing anything: its batch
	// was deleted.
	Drop bool
}

// Commit records outcomes in as few transactions as it can. Each holds
// only while every group it touches still has the claim key this worker
// created (the compare that fences a zombie): it writes each result or
// delayed retry, and either updates the group's done set or, when the group
// is finished, deletes its claim and records. When a group's claim is gone,
// its outcomes are rejected and the others are committed without it. It
// returns the outcomes that were rejected.
func (q *Queue) Commit(ctx context.Context, outs []Outcome) (rejected []Outcome, err error) {
	for len(outs) > 0 {
		n, groups := q.fit(outs)
		batch := outs[:n]
		cmps := make([]clientv3.Cmp, 0, len(groups))
		els := make([]clientv3.Op, 0, len(groups))
		ops := make([]clientv3.Op, 0, n+3*len(groups))
		newDone := map[*Group]map[int]bool{}
		for _, g := range groups {
			cmps = append(cmps,
				clientv3.Compare(clientv3.CreateRevision(q.keys.Claim(g.ID)), "=", g.ClaimRev), // fenced on our claim
				clientv3.Compare(clientv3.ModRevision(q.keys.DoneGroup(g.ID)), "=", g.doneRev)) // and on what we know landed
			els = append(els, clientv3.OpGet(q.keys.Claim(g.ID), clientv3.WithKeysOnly()), clientv3.OpGet(q.keys.DoneGroup(g.ID)))
			d := make(map[int]bool, len(g.done)+n)
			for i := range g.done {
				d[i] = true
			}
			newDone[g] = d
		}
		for _, o := range batch {
			t := o.Group.Running.Tasks[o.Index]
			switch {
			case o.Drop:
			case o.Retry != nil:
				ops = append(ops, clientv3.OpPut(q.keys.DelayedTask(t.Batch, t.ID), mustJSON(o.Retry)))
			default:
				ops = append(ops, clientv3.OpPut(q.keys.Result(t.Batch, t.ID), mustJSON(o.Result)))
			}
			newDone[o.Group][o.Index] = true
		}
		for _, g := range groups {
			if len(newDone[g]) == len(g.Running.Tasks) {
				ops = append(ops, clientv3.OpDelete(q.keys.Claim(g.ID)), clientv3.OpDelete(q.keys.RunningGroup(g.ID)), clientv3.OpDelete(q.keys.DoneGroup(g.ID)))
			} else {
				ops = append(ops, clientv3.OpPut(q.keys.DoneGroup(g.ID), encodeDone(newDone[g])))
			}
		}
		resp, err := q.txn(ctx, "commit").If(cmps...).Then(ops...).Else(els...).Commit()
		if err != nil {
			return rejected, err
		}
		if !resp.Succeeded {
			// Some group's claim is gone: drop its outcomes. Or a done set
			// moved: an earlier commit of these outcomes, whose answer was
			// lost, has landed since; what it did is done, the rest is
			// tried again.
			lost := map[*Group]bool{}
			for i, g := range groups {
				kvs := resp.Responses[2*i].GetResponseRange().Kvs
				if len(kvs) == 0 || kvs[0].CreateRevision != g.ClaimRev {
					lost[g] = true
					continue
				}
				done := resp.Responses[2*i+1].GetResponseRange().Kvs
				g.done, g.doneRev = parseDone(done), modRev(done)
			}
			keep := make([]Outcome, 0, len(outs))
			for _, o := range outs {
				switch {
				case lost[o.Group]:
					rejected = append(rejected, o)
				case o.Group.done[o.Index]: // landed
				default:
					keep = append(keep, o)
				}
			}
			outs = keep
			continue
		}
		for _, g := range groups {
			g.done, g.doneRev = newDone[g], resp.Header.Revision
		}
		outs = outs[n:]
	}
	return rejected, nil
}

// fit returns how many of outs fit in one transaction (one put per
// outcome, at most three operations per group) and the groups they touch.
func (q *Queue) fit(outs []Outcome) (int, []*Group) {
	var groups []*Group
	seen := map[*Group]bool{}
	owner := map[string]*Group{} // task -> the group whose outcome for it is in this transaction
	ops, bytes := 0, 0
	for i, o := range outs {
		t := o.Group.Running.Tasks[o.Index]
		task := t.Batch + "/" + t.ID
		extra := 1
		if !seen[o.Group] {
			extra += 3
		}
		// Outputs can be large: keep a transaction well under etcd's
		// 1.5 MiB request limit.
		size := o.size()
		if i > 0 && bytes+size > maxTxnBytes {
			return i, groups
		}
		bytes += size
		// A task in two groups (a zombie's late outcome and its re-claim's)
		// would write one key twice, which etcd refuses: the second outcome
		// starts the next transaction.
		if ops+extra > 128 || len(groups) >= 40 && !seen[o.Group] || owner[task] != nil && owner[task] != o.Group {
			return i, groups
		}
		owner[task] = o.Group
		if !seen[o.Group] {
			seen[o.Group] = true
			groups = append(groups, o.Group)
		}
		ops += extra
	}
	return len(outs), groups
}

// maxTxnBytes bounds the values one commit writes.
const maxTxnBytes = 1 << 20

// size estimates the bytes an outcome writes.
func (o Outcome) size() int {
	n := 1024
	var details map[string]string
	var hist []Attempt
	if o.Result != nil {
		n += len(o.Result.Message)
		details, hist = o.Result.Details, o.Result.History
	}
	if o.Retry != nil {
		hist = o.Retry.History
	}
	for _, v := range details {
		n += len(v)
	}
	for _, a := range hist {
		n += 256 + len(a.Message)
		for _, v := range a.Details {
			n += len(v)
		}
	}
	return n
}

func encodeDone(d map[int]bool) string {
	idx := make([]int, 0, len(d))
	for i := range d {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var b strings.Builder
	for j, i := range idx {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// Finished reports whether every task of the group has an outcome committed.
func (g *Group) Finished() bool { return len(g.done) == len(g.Running.Tasks) }

// Release gives a group's unfinished tasks back at once (a draining
// worker): it deletes the claim and marks the group released, and the
// scheduler requeues what the group had not finished without waiting for
// the lease to expire and without counting the attempt, since the worker
// gave the tasks back rather than lost them. It reports whether the claim
// was still this worker's.
func (q *Queue) Release(ctx context.Context, g *Group) (bool, error) {
	resp, err := q.txn(ctx, "release").
		If(clientv3.Compare(clientv3.CreateRevision(q.keys.Claim(g.ID)), "=", g.ClaimRev)).
		Then(clientv3.OpDelete(q.keys.Claim(g.ID)), clientv3.OpPut(q.keys.DoneGroup(g.ID), releasedMark+encodeDone(g.done))).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Reconcile finds out what landed of outcomes whose commit failed with an
// unknown outcome (a deadline, a lost connection): a commit puts each
// outcome and its group's done set in one transaction, so the done set
// says exactly which landed. For each group whose claim is still this
// worker's, the outcomes it has done are returned as landed and the
// group's done set is brought up to date; the rest are returned as
// pending, to be committed again under the same fence. Outcomes of groups whose claim is
// gone are returned apart: either a commit of them finished the group, or
// the claim was revoked or its lease expired and the leader recovers the
// group; neither needs the worker. No other commit of these groups may be
// in flight.
func (q *Queue) Reconcile(ctx context.Context, outs []Outcome) (landed, pending, gone []Outcome, err error) {
	var groups []*Group
	seen := map[*Group]bool{}
	for _, o := range outs {
		if !seen[o.Group] {
			seen[o.Group] = true
			groups = append(groups, o.Group)
		}
	}
	ours := map[*Group]bool{}
	for len(groups) > 0 {
		chunk := groups[:min(len(groups), maxListRanges/2)]
		groups = groups[len(chunk):]
		ops := make([]clientv3.Op, 0, 2*len(chunk))
		for _, g := range chunk {
			ops = append(ops, clientv3.OpGet(q.keys.Claim(g.ID), clientv3.WithKeysOnly()), clientv3.OpGet(q.keys.DoneGroup(g.ID)))
		}
		resp, err := q.txn(ctx, "reconcile").Then(ops...).Commit()
		if err != nil {
			return nil, nil, nil, err
		}
		for i, g := range chunk {
			claims := resp.Responses[2*i].GetResponseRange().Kvs
			if len(claims) == 0 || claims[0].CreateRevision != g.ClaimRev {
				continue
			}
			ours[g] = true
			done := resp.Responses[2*i+1].GetResponseRange().Kvs
			g.done, g.doneRev = parseDone(done), modRev(done)
		}
	}
	for _, o := range outs {
		switch {
		case !ours[o.Group]:
			gone = append(gone, o)
		case o.Group.done[o.Index]:
			landed = append(landed, o)
		default:
			pending = append(pending, o)
		}
	}
	return landed, pending, gone, nil
}

// Landed sorts outcomes whose group's claim is gone (Reconcile's gone)
// into those that landed before the claim went, and those the fence
// rejected or would have: a result (or a delayed retry) stored by this
// worker for the same attempt is the outcome's own. A dropped outcome
// writes nothing, and counts as landed.
func (q *Queue) Landed(ctx context.Context, outs []Outcome, worker string) (landed, rejected []Outcome, err error) {
	for len(outs) > 0 {
		chunk := outs[:min(len(outs), EtcdMaxTxnOps)]
		outs = outs[len(chunk):]
		ops := make([]clientv3.Op, len(chunk))
		for i, o := range chunk {
			t := o.Group.Running.Tasks[o.Index]
			key := q.keys.Result(t.Batch, t.ID)
			if o.Retry != nil {
				key = q.keys.DelayedTask(t.Batch, t.ID)
			}
			ops[i] = clientv3.OpGet(key)
		}
		resp, err := q.txn(ctx, "read").Then(ops...).Commit()
		if err != nil {
			return nil, nil, err
		}
		for i, o := range chunk {
			if o.Drop {
				landed = append(landed, o)
				continue
			}
			kvs := resp.Responses[i].GetResponseRange().Kvs
			ours := false
			if len(kvs) == 1 {
				t := o.Group.Running.Tasks[o.Index]
				if o.Retry != nil {
					var d Task
					ours = decodeKV(kvs[0], &d) == nil && d.Attempt == o.Retry.Attempt
				} else {
					var r Result
					ours = decodeKV(kvs[0], &r) == nil && r.Worker == worker && r.Attempts == t.Attempt
				}
			}
			if ours {
				landed = append(landed, o)
			} else {
				rejected = append(rejected, o)
			}
		}
	}
	return landed, rejected, nil
}

// releasedMark starts the done set of a group its worker gave back.
const releasedMark = "released:"

// Adopt re-reads a group whose claim transaction had an unknown outcome
// (its context ended before the reply): the group as committed if its
// claim key exists, nil if the claim did not land. Group IDs are unique to
// the claiming session, so a claim key found is this worker's.
func (q *Queue) Adopt(ctx context.Context, group string) (*Group, error) {
	claimKey, runKey := q.keys.Claim(group), q.keys.RunningGroup(group)
	resp, err := q.txn(ctx, "adopt").Then(clientv3.OpGet(claimKey), clientv3.OpGet(runKey)).Commit()
	if err != nil {
		return nil, err
	}
	claims, runs := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(claims) == 0 || len(runs) == 0 {
		return nil, nil
	}
	var run Running
	if err := decodeKV(runs[0], &run); err != nil {
		return nil, err
	}
	return &Group{ID: group, Running: run, ClaimRev: claims[0].CreateRevision, done: map[int]bool{}}, nil
}

// QuarantineReady moves a malformed ready value aside and ends its task
// dead with the reason, so that no worker trips over it again.
func (q *Queue) QuarantineReady(ctx context.Context, b BadValue) error {
	_, _, batch, task, err := q.keys.ParseReady(b.Key())
	if err != nil {
		return q.quarantine(ctx, Fence{}, b.KV, err)
	}
	_, err = q.txn(ctx, "quarantine").
		If(clientv3.Compare(clientv3.ModRevision(b.Key()), "=", b.KV.ModRevision),
			clientv3.Compare(clientv3.CreateRevision(q.keys.Result(batch, task)), "=", 0)).
		Then(
			clientv3.OpDelete(b.Key()),
			clientv3.OpPut(q.keys.Quarantine(b.Key()), mustJSON(map[string]string{"value": string(b.KV.Value), "error": b.Err.Error()})),
			clientv3.OpPut(q.keys.Result(batch, task), mustJSON(Result{Host: task, Status: StatusDead, FinishedAt: time.Now().UTC(),
				Message: "task record is malformed and was quarantined under " + q.keys.Quarantine(b.Key()) + ": " + b.Err.Error()})),
		).
		Commit()
	return err
}

// Jitter returns a random duration in [0, n), for backoff.
func Jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n)
}
