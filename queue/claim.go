package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxClaim is the most tasks one claim transaction takes: a compare and a
// delete per task, plus the group's claim and running records, stay within
// etcd's 128 operations per branch.
const MaxClaim = 64

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
