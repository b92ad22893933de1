package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
)

type fixture struct {
	env   *etcdtest.Env
	q     *queue.Queue
	ctx   context.Context
	fence *queue.Fence // the leadership submitAll shards under, once won
}

func setup(t testing.TB) *fixture {
	t.Helper()
	env := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return &fixture{env: env, q: queue.New(env.Client, env.Prefix), ctx: ctx}
}

func hosts(n int) []inventory.Host {
	out := make([]inventory.Host, n)
	for i := range out {
		out[i] = inventory.Host{Name: fmt.Sprintf("host-%05d:22", i), Address: fmt.Sprintf("host-%05d", i), Port: 22}
	}
	return out
}

// session opens a lease-backed session that ends with the test.
func (f *fixture) session(t testing.TB, ttl int) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(f.env.Client, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lead wins the election and returns the fence and the session behind it.
func (f *fixture) lead(t testing.TB) (queue.Fence, *concurrency.Session) {
	t.Helper()
	s := f.session(t, 5)
	e := concurrency.NewElection(s, f.q.Keys().Election())
	if err := e.Campaign(f.ctx, "test-leader"); err != nil {
		t.Fatal(err)
	}
	return queue.Fence{Key: e.Key(), Rev: e.Rev()}, s
}

func (f *fixture) submit(t testing.TB, id string, n int) queue.BatchSpec {
	t.Helper()
	spec, existed, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: id, Check: "noop", Hosts: hosts(n)})
	if err != nil || existed {
		t.Fatalf("submit %s: existed=%v err=%v", id, existed, err)
	}
	return spec
}

// submitAndShard submits a batch of n hosts and shards it as leader.
func (f *fixture) submitAndShard(t testing.TB, id string, n int) (queue.BatchSpec, queue.Fence) {
	t.Helper()
	spec := f.submit(t, id, n)
	fence, _ := f.lead(t)
	if err := f.q.Shard(f.ctx, fence, spec); err != nil {
		t.Fatal(err)
	}
	return spec, fence
}

func (f *fixture) count(t testing.TB, prefix string) int {
	t.Helper()
	return len(etcdtest.Keys(t, f.env.Client, prefix))
}

var groupSeq atomic.Int64

// claim claims up to max ready tasks as one group.
func (f *fixture) claim(t testing.TB, lease clientv3.LeaseID, worker string, max int) *queue.Group {
	t.Helper()
	ready, bad, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", 0), max)
	if err != nil || len(bad) > 0 {
		t.Fatalf("list ready: %v %v", err, bad)
	}
	if len(ready) == 0 {
		return nil
	}
	now := time.Now()
	g, err := f.q.Claim(f.ctx, lease, worker, fmt.Sprintf("g%d", groupSeq.Add(1)), ready, now,
		func(queue.Task) time.Time { return now.Add(time.Minute) })
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// claimAll claims every ready task, in groups of MaxClaim.
func (f *fixture) claimAll(t testing.TB, lease clientv3.LeaseID, worker string) []*queue.Group {
	t.Helper()
	var all []*queue.Group
	for {
		g := f.claim(t, lease, worker, queue.MaxClaim)
		if g == nil {
			return all
		}
		all = append(all, g)
	}
}

// finish builds the outcome that ends task i of g with status.
func finish(g *queue.Group, i int, status queue.Status, worker string) queue.Outcome {
	t := g.Running.Tasks[i]
	return queue.Outcome{Group: g, Index: i, Result: &queue.Result{Host: t.Host.Name, Status: status, Attempts: t.Attempt, Worker: worker}}
}

// finishAll ends every task of g with status.
func finishAll(g *queue.Group, status queue.Status, worker string) []queue.Outcome {
	var outs []queue.Outcome
	for i := range g.Running.Tasks {
		outs = append(outs, finish(g, i, status, worker))
	}
	return outs
}

func tasksOf(groups []*queue.Group) int {
	n := 0
	for _, g := range groups {
		n += len(g.Running.Tasks)
	}
	return n
}

func TestSubmitIsIdempotentAndRefusesDifferentContent(t *testing.T) {
	f := setup(t)
	spec := f.submit(t, "b1", 20000) // more than one inventory chunk
	if spec.Hosts != 20000 || spec.Chunks < 2 {
		t.Fatalf("spec = %+v", spec)
	}
	before := etcdtest.Keys(t, f.env.Client, f.env.Prefix)

	again, existed, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b1", Check: "noop", Hosts: hosts(20000)})
	if err != nil || !existed || again.Nonce != spec.Nonce {
		t.Fatalf("resubmit: existed=%v err=%v", existed, err)
	}
	_, _, err = f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b1", Check: "tcp", Hosts: hosts(20000)})
	if !errors.Is(err, queue.ErrBatchExists) {
		t.Fatalf("different content: err = %v, want ErrBatchExists", err)
	}
	after := etcdtest.Keys(t, f.env.Client, f.env.Prefix)
	if strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Fatalf("refused submits changed etcd:\nbefore %v\nafter  %v", before, after)
	}
	got, err := f.q.LoadHosts(f.ctx, spec)
	if err != nil || len(got) != 20000 || got[19999].Name != "host-19999:22" {
		t.Fatalf("load hosts: %d hosts, err %v", len(got), err)
	}
}

func TestSubmitRacesForOneID(t *testing.T) {
	f := setup(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			check := "noop"
			if i%2 == 1 {
				check = "tcp"
			}
			_, _, errs[i] = f.q.Submit(f.ctx, queue.SubmitRequest{ID: "race", Check: check, Hosts: hosts(10)})
		})
	}
	wg.Wait()
	spec, err := f.q.LoadBatch(f.ctx, "race")
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		wantOK := (i%2 == 0) == (spec.Check == "noop")
		if wantOK != (err == nil) {
			t.Errorf("submit %d (winner check %s): err = %v", i, spec.Check, err)
		}
	}
	// Only the winner's inventory chunks (and its start mark) remain.
	if n := f.count(t, f.q.Keys().Batch("race")+"hosts/"); n != spec.Chunks+1 {
		t.Fatalf("%d chunk keys left, want %d", n, spec.Chunks+1)
	}
}

func TestShardWritesEveryHostOnceAndIsFenced(t *testing.T) {
	f := setup(t)
	spec := f.submit(t, "b1", 1000)
	fence, sess := f.lead(t)
	if err := f.q.Shard(f.ctx, fence, spec); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, f.q.Keys().Ready()); n != 1000 {
		t.Fatalf("%d ready, want 1000", n)
	}
	// Sharding again is a no-op: nothing is rewritten.
	rev := f.revision(t)
	if err := f.q.Shard(f.ctx, fence, spec); err != nil {
		t.Fatal(err)
	}
	if got := f.revision(t); got != rev {
		t.Fatalf("re-shard wrote: revision %d -> %d", rev, got)
	}
	// A deposed leader's writes are rejected.
	spec2 := f.submit(t, "b2", 10)
	sess.Close()
	if err := f.q.Shard(f.ctx, fence, spec2); !errors.Is(err, queue.ErrNotLeader) {
		t.Fatalf("stale leader shard: err = %v, want ErrNotLeader", err)
	}
	if n := f.count(t, f.q.Keys().Ready()); n != 1000 {
		t.Fatalf("stale leader wrote: %d ready keys, want 1000", n)
	}
}

func TestShardResumesAfterLeaderChange(t *testing.T) {
	f := setup(t)
	spec := f.submit(t, "b1", 500)
	fence1, sess1 := f.lead(t)
	// The first leader shards under a context that ends after its first
	// transactions have landed.
	ctx, cancel := context.WithCancel(f.ctx)
	watch := f.env.Client.Watch(ctx, f.q.Keys().BatchProgress("b1"), clientv3.WithPrefix())
	errc := make(chan error, 1)
	go func() { errc <- f.q.Shard(ctx, fence1, spec) }()
	<-watch // one chunk committed
	cancel()
	<-errc
	sess1.Close()

	fence2, _ := f.lead(t)
	if fence2.Rev == fence1.Rev {
		t.Fatal("second leader has the first one's fence")
	}
	if err := f.q.Shard(f.ctx, fence2, spec); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, f.q.Keys().Ready()); n != 500 {
		t.Fatalf("%d tasks, want 500", n)
	}
	// Each task key was written exactly once: version 1.
	resp, err := f.env.Client.Get(f.ctx, f.q.Keys().Ready(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if kv.Version != 1 {
			t.Fatalf("%s written %d times", kv.Key, kv.Version)
		}
	}
}

func (f *fixture) revision(t testing.TB) int64 {
	t.Helper()
	resp, err := f.env.Client.Get(f.ctx, "rev-probe")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestConcurrentClaimsTakeEachTaskOnce(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 1000)
	const workers = 50
	var wg sync.WaitGroup
	got := make([][]*queue.Group, workers)
	for i := range workers {
		s := f.session(t, 10)
		wg.Go(func() {
			for {
				ready, _, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", i), 8)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ready) == 0 {
					return
				}
				now := time.Now()
				g, err := f.q.Claim(f.ctx, s.Lease(), fmt.Sprint("w", i), fmt.Sprintf("w%d-%d", i, len(got[i])), ready, now,
					func(queue.Task) time.Time { return now })
				if err != nil {
					t.Error(err)
					return
				}
				if g != nil {
					got[i] = append(got[i], g)
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for i, gs := range got {
		for _, g := range gs {
			for _, task := range g.Running.Tasks {
				if prev, dup := seen[task.ID]; dup {
					t.Fatalf("task %s claimed by %s and w%d", task.ID, prev, i)
				}
				seen[task.ID] = fmt.Sprint("w", i)
			}
		}
	}
	if len(seen) != 1000 {
		t.Fatalf("%d tasks claimed, want 1000", len(seen))
	}
	if n := f.count(t, f.q.Keys().Ready()); n != 0 {
		t.Fatalf("%d ready keys left", n)
	}
}

func TestClaimFallsBackToWhatIsLeft(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 40)
	a, b := f.session(t, 10), f.session(t, 10)
	listed, _, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", 0), 40)
	if err != nil || len(listed) != 40 {
		t.Fatalf("listed %d, err %v", len(listed), err)
	}
	// A takes every other task; B then claims from its stale listing.
	var half []queue.Ready
	for i := 0; i < len(listed); i += 2 {
		half = append(half, listed[i])
	}
	now := time.Now()
	dl := func(queue.Task) time.Time { return now }
	ga, err := f.q.Claim(f.ctx, a.Lease(), "a", "ga", half, now, dl)
	if err != nil || len(ga.Running.Tasks) != 20 {
		t.Fatalf("a: %+v, err %v", ga, err)
	}
	gb, err := f.q.Claim(f.ctx, b.Lease(), "b", "gb", listed, now, dl)
	if err != nil || len(gb.Running.Tasks) != 20 {
		t.Fatalf("b: %+v, err %v", gb, err)
	}
	for _, x := range gb.Running.Tasks {
		for _, y := range ga.Running.Tasks {
			if x.ID == y.ID {
				t.Fatalf("%s claimed twice", x.ID)
			}
		}
	}
}

func TestReadyCursorResumesPastClaimedTasksAndWrapsAround(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 200)
	s := f.session(t, 10)
	cur := queue.NewReadyCursor()
	order := queue.Assignment{}.ShardOrder("", 0)
	now := time.Now()
	dl := func(queue.Task) time.Time { return now.Add(time.Minute) }
	claimed := map[string]bool{}
	var groups []*queue.Group
	for {
		ready, bad, err := f.q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 7)
		if err != nil || len(bad) > 0 {
			t.Fatalf("list: %v %v", err, bad)
		}
		if len(ready) == 0 {
			break
		}
		g, err := f.q.Claim(f.ctx, s.Lease(), "w", fmt.Sprintf("g%d", groupSeq.Add(1)), ready, now, dl)
		if err != nil || g == nil || len(g.Running.Tasks) != len(ready) {
			t.Fatalf("claim %d listed: %+v, err %v", len(ready), g, err)
		}
		cur.Forget(ready)
		for _, task := range g.Running.Tasks {
			if claimed[task.ID] {
				t.Fatalf("%s listed again after it was claimed", task.ID)
			}
			claimed[task.ID] = true
		}
		groups = append(groups, g)
	}
	if len(claimed) != 200 {
		t.Fatalf("%d tasks claimed through the cursor, want 200", len(claimed))
	}
	// The worker dies; three groups are requeued, behind every cursor.
	s.Close()
	want := map[string]bool{}
	for _, g := range groups[:3] {
		if req, _, err := f.q.RecoverGroup(f.ctx, fence, g.ID, policyOf(3), "lost", time.Now()); err != nil || req != len(g.Running.Tasks) {
			t.Fatalf("recover %s: %d, %v", g.ID, req, err)
		}
		for _, task := range g.Running.Tasks {
			want[task.ID] = true
		}
	}
	// Shards found empty are skipped until Reset (the worker resets on a
	// wake, which every requeue bumps, and once a second).
	if ready, _, err := f.q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 100); err != nil || len(ready) != 0 {
		t.Fatalf("before Reset: %d listed, err %v; want the empty shards skipped", len(ready), err)
	}
	cur.Reset()
	ready, _, err := f.q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 100)
	if err != nil || len(ready) != len(want) {
		t.Fatalf("after Reset: %d listed, err %v; want the %d requeued", len(ready), err, len(want))
	}
	for _, r := range ready {
		if !want[r.Task.ID] || r.Task.Attempt != 2 {
			t.Fatalf("listed %s attempt %d, want only the requeued tasks, on attempt 2", r.Task.ID, r.Task.Attempt)
		}
	}
}

// opCounter counts the queue's etcd requests by operation.
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *opCounter) ObserveTxn(op string, _ time.Duration, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[op]++
}

func (c *opCounter) get(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
}

// TestListingReadsEveryShardInOneRoundTrip: however many shards a listing
// must look at to fill its limit, empty ones included, it is one request;
// and a listing made while the last one's keys are still being claimed
// does not hand them out again.
func TestListingReadsEveryShardInOneRoundTrip(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 40) // a few per shard: a full group needs many shards
	ops := &opCounter{n: map[string]int{}}
	q := f.q.WithObserver(ops)
	cur := queue.NewReadyCursor()
	order := queue.Assignment{}.ShardOrder("", 0)
	first, _, err := q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 30)
	if err != nil || len(first) != 30 {
		t.Fatalf("first listing: %d tasks, err %v; want 30", len(first), err)
	}
	if n := ops.get("list_ready"); n != 1 {
		t.Fatalf("a listing over %d shards took %d requests, want 1", queue.DefaultShards, n)
	}
	cur.Reset() // as a wake would: every shard again, the taken keys too
	second, _, err := q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 30)
	if err != nil || len(second) != 10 {
		t.Fatalf("second listing: %d tasks, err %v; want the 10 not listed yet", len(second), err)
	}
	seen := map[string]bool{}
	for _, r := range append(first, second...) {
		if seen[r.Key] {
			t.Fatalf("%s listed twice while its claim was in flight", r.Key)
		}
		seen[r.Key] = true
	}
	cur.Forget(first)
	cur.Reset()
	third, _, err := q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 64)
	if err != nil || len(third) != 30 {
		t.Fatalf("after Forget: %d tasks, err %v; want the 30 unclaimed first ones again", len(third), err)
	}
}

// TestReconcileSaysWhatLandedAfterAnUnknownCommit: after a commit whose
// answer was lost, Reconcile drops what landed (by the group's done set)
// and returns the rest to commit again, so no result is written twice;
// once the claim is gone, every outcome of the group is returned apart.
func TestReconcileSaysWhatLandedAfterAnUnknownCommit(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 3)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 3)
	outs := finishAll(g, queue.StatusOK, "w")
	// The first outcome's commit landed, but the worker never heard.
	if rej, err := f.q.Commit(f.ctx, outs[:1]); err != nil || len(rej) != 0 {
		t.Fatalf("commit: %v %v", rej, err)
	}
	stale := &queue.Group{ID: g.ID, Running: g.Running, ClaimRev: g.ClaimRev}
	for i := range outs {
		outs[i].Group = stale // what the worker knew: nothing done
	}
	landed, pending, gone, err := f.q.Reconcile(f.ctx, outs)
	if err != nil || len(gone) != 0 || len(landed) != 1 || landed[0].Index != 0 || len(pending) != 2 || pending[0].Index != 1 || pending[1].Index != 2 {
		t.Fatalf("reconcile: landed %d, pending %d, gone %d, err %v; want outcome 0 landed, 1 and 2 pending", len(landed), len(pending), len(gone), err)
	}
	if rej, err := f.q.Commit(f.ctx, pending); err != nil || len(rej) != 0 || !stale.Finished() {
		t.Fatalf("commit the rest: %v %v, finished %v", rej, err, stale.Finished())
	}
	for _, kv := range etcdtest.KVs(t, f.env.Client, f.q.Keys().BatchResults("b1")) {
		if kv.Version != 1 {
			t.Fatalf("%s written %d times", kv.Key, kv.Version)
		}
	}
	// A group whose claim was revoked: all its outcomes are gone.
	g2 := f.claimAfter(t, fence, s)
	_, pending, gone, err = f.q.Reconcile(f.ctx, finishAll(g2, queue.StatusOK, "w"))
	if err != nil || len(pending) != 0 || len(gone) != len(g2.Running.Tasks) {
		t.Fatalf("revoked group: pending %d, gone %d, err %v", len(pending), len(gone), err)
	}
}

// TestALateCommitCannotLandTwice: a commit whose answer was lost may be
// applied by etcd after the worker reconciled and committed the same
// outcomes again (a request queued at a member that hung; a proposal a new
// etcd leader commits after the old one died). Both carry the done set's
// revision as the worker knew it, so only one lands: no result is written
// twice, and the late one counts its outcomes as landed, not rejected.
func TestALateCommitCannotLandTwice(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 3)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 3)
	late := &queue.Group{ID: g.ID, Running: g.Running, ClaimRev: g.ClaimRev} // the worker's view when it sent the first commit
	outs := finishAll(g, queue.StatusOK, "w")
	// The worker committed outcomes 0 and 1 again after reconciling ...
	if rej, err := f.q.Commit(f.ctx, outs[:2]); err != nil || len(rej) != 0 {
		t.Fatalf("commit: %v %v", rej, err)
	}
	// ... and then etcd applies the first request, as it was sent.
	lateOuts := finishAll(late, queue.StatusOK, "w")
	if rej, err := f.q.Commit(f.ctx, lateOuts[:2]); err != nil || len(rej) != 0 {
		t.Fatalf("late commit: rejected %d, err %v; want its outcomes counted as landed", len(rej), err)
	}
	for _, kv := range etcdtest.KVs(t, f.env.Client, f.q.Keys().BatchResults("b1")) {
		if kv.Version != 1 {
			t.Fatalf("%s written %d times", kv.Key, kv.Version)
		}
	}
	// The late view caught up: its last outcome commits and finishes the group.
	if rej, err := f.q.Commit(f.ctx, lateOuts[2:]); err != nil || len(rej) != 0 || !late.Finished() {
		t.Fatalf("commit the last: %v %v, finished %v", rej, err, late.Finished())
	}
	if n := len(etcdtest.Keys(t, f.env.Client, f.q.Keys().BatchResults("b1"))); n != 3 {
		t.Fatalf("%d results, want 3", n)
	}
}

// claimAfter submits another host, claims it, and revokes the claim as an
// overrun does.
func (f *fixture) claimAfter(t *testing.T, fence queue.Fence, s *concurrency.Session) *queue.Group {
	t.Helper()
	spec := f.submit(t, "b2", 1)
	if err := f.q.Shard(f.ctx, fence, spec); err != nil {
		t.Fatal(err)
	}
	g := f.claim(t, s.Lease(), "w", 1)
	if ok, err := f.q.Revoke(f.ctx, fence, g.ID, g.ClaimRev); err != nil || !ok {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	return g
}

// TestRecoverDoesNotRequeueATaskWithAResult: a commit whose answer its
// worker lost landed, but the group's done set does not say so (the
// worker released the group with the set it knew). Recovery requeues only
// the tasks without a result, so none runs twice.
func TestRecoverDoesNotRequeueATaskWithAResult(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 3)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 3)
	landed := g.Running.Tasks[1]
	if _, err := f.env.Client.Put(f.ctx, f.q.Keys().Result(landed.Batch, landed.ID), `{"host":"`+landed.Host.Name+`","status":"ok","attempts":1}`); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.q.Release(f.ctx, g); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	requeued, dead, err := f.q.RecoverGroup(f.ctx, fence, g.ID, policyOf(3), "lost", time.Now())
	if err != nil || requeued != 2 || dead != 0 {
		t.Fatalf("recover: requeued %d, dead %d, err %v; want the 2 tasks without a result", requeued, dead, err)
	}
	for _, k := range etcdtest.Keys(t, f.env.Client, f.q.Keys().Ready()) {
		if strings.HasSuffix(k, "/"+landed.ID) {
			t.Fatalf("%s requeued though it has a result", k)
		}
	}
}

func TestCommitIsFencedOnTheClaim(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 4)
	zombie := f.session(t, 10)
	zg := f.claim(t, zombie.Lease(), "zombie", 2)
	other := f.session(t, 10)
	og := f.claim(t, other.Lease(), "other", 2)
	// The zombie's lease is revoked (as when it overran its TTL); the
	// scheduler requeues and a healthy worker claims and completes.
	if _, err := f.env.Client.Revoke(f.ctx, zombie.Lease()); err != nil {
		t.Fatal(err)
	}
	req, dead, err := f.q.RecoverGroup(f.ctx, fence, zg.ID, policyOf(3), "lost", time.Now())
	if err != nil || req != 2 || dead != 0 {
		t.Fatalf("recover: %d %d %v", req, dead, err)
	}
	healthy := f.session(t, 10)
	hg := f.claim(t, healthy.Lease(), "healthy", 2)
	if hg.Running.Tasks[0].Attempt != 2 || len(hg.Running.Tasks[0].History) != 1 {
		t.Fatalf("reclaimed %+v", hg.Running.Tasks[0])
	}
	if rej, err := f.q.Commit(f.ctx, finishAll(hg, queue.StatusOK, "healthy")); err != nil || len(rej) != 0 {
		t.Fatalf("healthy commit: %v %v", rej, err)
	}
	// The zombie wakes up and commits with a healthy group in one call:
	// its outcomes are rejected, the other group's land.
	outs := append(finishAll(zg, queue.StatusFail, "zombie"), finishAll(og, queue.StatusOK, "other")...)
	rej, err := f.q.Commit(f.ctx, outs)
	if err != nil || len(rej) != 2 || rej[0].Group != zg || rej[1].Group != zg {
		t.Fatalf("mixed commit: rejected %d, err %v", len(rej), err)
	}
	rows, _, err := f.q.Results(f.ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Status != queue.StatusOK || (r.Worker != "healthy" && r.Worker != "other") {
			t.Fatalf("row %+v", r)
		}
	}
	// Finished groups leave nothing behind.
	for _, p := range []string{f.q.Keys().Claims(), f.q.Keys().Running(), f.q.Keys().Done(), f.q.Keys().Ready()} {
		if n := f.count(t, p); n != 0 {
			t.Fatalf("%d keys left under %s", n, p)
		}
	}
}

func policyOf(max int) func(string) (queue.Policy, error) {
	return func(string) (queue.Policy, error) { return queue.Policy{MaxAttempts: max}, nil }
}

func TestRecoverRequeuesOnlyUnfinishedAndGivesUpAtMax(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 3)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 3)
	// One task finishes before the worker dies.
	if rej, err := f.q.Commit(f.ctx, []queue.Outcome{finish(g, 0, queue.StatusOK, "w")}); err != nil || len(rej) != 0 {
		t.Fatal(rej, err)
	}
	s.Close()
	req, dead, err := f.q.RecoverGroup(f.ctx, fence, g.ID, policyOf(2), "lost", time.Now())
	if err != nil || req != 2 || dead != 0 {
		t.Fatalf("first recovery: %d %d %v", req, dead, err)
	}
	// Recovering again finds nothing: the group's records are gone.
	if req, dead, err := f.q.RecoverGroup(f.ctx, fence, g.ID, policyOf(2), "lost", time.Now()); err != nil || req+dead != 0 {
		t.Fatalf("second recovery: %d %d %v", req, dead, err)
	}
	s2 := f.session(t, 10)
	g2 := f.claim(t, s2.Lease(), "w2", 3)
	if len(g2.Running.Tasks) != 2 || g2.Running.Tasks[0].Attempt != 2 {
		t.Fatalf("second claim %+v", g2.Running)
	}
	s2.Close()
	req, dead, err = f.q.RecoverGroup(f.ctx, fence, g2.ID, policyOf(2), "lost again", time.Now())
	if err != nil || req != 0 || dead != 2 {
		t.Fatalf("at max attempts: %d %d %v", req, dead, err)
	}
	rows, _, err := f.q.Results(f.ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[queue.Status]int{}
	for _, r := range rows {
		counts[r.Status]++
		if r.Status == queue.StatusDead && (r.Attempts != 2 || len(r.History) != 1 || !strings.Contains(r.Message, "lost again")) {
			t.Fatalf("dead row %+v", r)
		}
	}
	if counts[queue.StatusOK] != 1 || counts[queue.StatusDead] != 2 {
		t.Fatalf("counts %v", counts)
	}
}

func TestStaleLeaderCannotRecoverOrPromote(t *testing.T) {
	f := setup(t)
	spec := f.submit(t, "b1", 2)
	fence, leaderSess := f.lead(t)
	if err := f.q.Shard(f.ctx, fence, spec); err != nil {
		t.Fatal(err)
	}
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 2)
	s.Close()
	leaderSess.Close() // deposed: its election key is gone
	before := etcdtest.Keys(t, f.env.Client, f.env.Prefix+"/")
	if _, _, err := f.q.RecoverGroup(f.ctx, fence, g.ID, policyOf(3), "lost", time.Now()); !errors.Is(err, queue.ErrNotLeader) {
		t.Fatalf("stale recover: %v, want ErrNotLeader", err)
	}
	if err := f.q.Finish(f.ctx, fence, "b1", queue.Summary{}); !errors.Is(err, queue.ErrNotLeader) {
		t.Fatalf("stale finish: %v, want ErrNotLeader", err)
	}
	if ok, err := f.q.Revoke(f.ctx, fence, g.ID, g.ClaimRev); ok || !errors.Is(err, queue.ErrNotLeader) {
		t.Fatalf("stale revoke: %v %v, want ErrNotLeader", ok, err)
	}
	after := etcdtest.Keys(t, f.env.Client, f.env.Prefix+"/")
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Fatalf("stale leader changed etcd:\n%v\n%v", before, after)
	}
}

func TestRetryGoesThroughDelayedAndBack(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 1)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 1)
	next := g.Running.Tasks[0]
	next.History = append(next.History, queue.Attempt{Attempt: 1, Status: queue.StatusError, Message: "timeout"})
	next.Attempt = 2
	next.NotBefore = time.Now().Add(time.Hour)
	if rej, err := f.q.Commit(f.ctx, []queue.Outcome{{Group: g, Index: 0, Retry: &next}}); err != nil || len(rej) != 0 {
		t.Fatal(rej, err)
	}
	resp, err := f.env.Client.Get(f.ctx, f.q.Keys().Delayed(), clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("delayed: %v", err)
	}
	rows, _, _ := f.q.Results(f.ctx, "b1")
	if rows[0].Status != queue.StatusRetrying {
		t.Fatalf("row %+v, want retrying", rows[0])
	}
	if n, err := f.q.Promote(f.ctx, fence, resp.Kvs); err != nil || n != 1 {
		t.Fatalf("promote: %d %v", n, err)
	}
	g2 := f.claim(t, s.Lease(), "w", 1)
	if g2 == nil || g2.Running.Tasks[0].Attempt != 2 || len(g2.Running.Tasks[0].History) != 1 {
		t.Fatalf("after promote: %+v", g2)
	}
}

func TestStopPendingEndsUnstartedTasks(t *testing.T) {
	f := setup(t)
	spec, fence := f.submitAndShard(t, "b1", 10)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 3)
	if err := f.q.StopBatch(f.ctx, fence, "b1", queue.StatusCancelled); err != nil {
		t.Fatal(err)
	}
	n, err := f.q.StopPending(f.ctx, fence, spec, queue.StatusCancelled)
	if err != nil || n != 7 {
		t.Fatalf("stopped %d, err %v", n, err)
	}
	if rej, err := f.q.Commit(f.ctx, finishAll(g, queue.StatusOK, "w")); err != nil || len(rej) != 0 {
		t.Fatal(rej, err)
	}
	tally, err := f.q.Tally(f.ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	sum := queue.SummaryOf(10, tally, time.Now())
	if sum.Counts[queue.StatusOK] != 3 || sum.Counts[queue.StatusCancelled] != 7 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestFinishOnceAndPurge(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 5)
	s := f.session(t, 10)
	for _, g := range f.claimAll(t, s.Lease(), "w") {
		if rej, err := f.q.Commit(f.ctx, finishAll(g, queue.StatusOK, "w")); err != nil || len(rej) != 0 {
			t.Fatal(rej, err)
		}
	}
	tally, err := f.q.Tally(f.ctx, "b1")
	if err != nil || len(tally) != 5 {
		t.Fatalf("tally %v %v", tally, err)
	}
	if err := f.q.Finish(f.ctx, fence, "b1", queue.SummaryOf(5, tally, time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := f.q.Finish(f.ctx, fence, "b1", queue.Summary{Total: 99}); err != nil {
		t.Fatal(err)
	}
	got, done, err := f.q.Summary(f.ctx, "b1")
	if err != nil || !done || got.Total != 5 || got.Counts[queue.StatusOK] != 5 {
		t.Fatalf("summary = %+v done=%v err=%v (must be written once)", got, done, err)
	}
	old, err := f.q.FinishedBefore(f.ctx, time.Now().Add(time.Hour))
	if err != nil || len(old) != 1 || old[0] != "b1" {
		t.Fatalf("finished before: %v %v", old, err)
	}
	if err := f.q.Purge(f.ctx, fence, "b1"); err != nil {
		t.Fatal(err)
	}
	// Only the election key and the workers' wake key remain.
	keys := etcdtest.Keys(t, f.env.Client, f.env.Prefix+"/")
	if len(keys) != 2 || !strings.Contains(keys[0], "/election/") || keys[1] != f.q.Keys().Wake() {
		t.Fatalf("left after purge: %v", keys)
	}
}

func TestResultTallyFollowsWhatTallyReads(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 30)
	s := f.session(t, 10)
	var groups []*queue.Group
	for range 3 {
		groups = append(groups, f.claim(t, s.Lease(), "w", 10))
	}
	commit := func(outs []queue.Outcome) {
		t.Helper()
		if rej, err := f.q.Commit(f.ctx, outs); err != nil || len(rej) != 0 {
			t.Fatal(rej, err)
		}
	}
	commit(finishAll(groups[0], queue.StatusOK, "w")) // before it starts: listed

	reported := make(chan int, 100)
	tally := f.q.FollowResults("b1", func(n int) { reported <- n })
	ctx, cancel := context.WithCancel(f.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { tally.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	same := func(want int) {
		t.Helper()
		got, err := tally.Current(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		read, err := f.q.Tally(f.ctx, "b1")
		if err != nil {
			t.Fatal(err)
		}
		readCounts := queue.CountsOf(read)
		maps.DeleteFunc(got, func(_ queue.Status, n int) bool { return n == 0 })
		if got.Total() != want || len(read) != want || !maps.Equal(got, readCounts) {
			t.Fatalf("followed tally counts %v (%d results), want %d as Tally reads them: %v", got, got.Total(), want, readCounts)
		}
		wantFailed := 0
		for _, st := range read {
			if st.Failed() {
				wantFailed++
			}
		}
		if failed, n, ok := tally.Failed(); !ok || failed != wantFailed || n != want {
			t.Fatalf("tally.Failed() = %d of %d (following %v), want %d of %d", failed, n, ok, wantFailed, want)
		}
		for {
			select {
			case n := <-reported:
				if n == want {
					return
				}
			case <-f.ctx.Done():
				t.Fatalf("the tally never reported %d results", want)
			}
		}
	}
	same(10)

	// Committed while it follows, and a value that does not decode.
	commit(finishAll(groups[1], queue.StatusFail, "w"))
	commit(finishAll(groups[2], queue.StatusOK, "w")[:5])
	if _, err := f.env.Client.Put(f.ctx, f.q.Keys().Result("b1", "garbage"), "{not json"); err != nil {
		t.Fatal(err)
	}
	same(26) // 10 fail and the malformed one, an error, count as failed
	// A result whose status is no result's (a task state here) is an
	// error, in the tally as in Results.
	odd := groups[0].Running.Tasks[0]
	if _, err := f.env.Client.Put(f.ctx, f.q.Keys().Result("b1", odd.ID), `{"v":1,"status":"pending"}`); err != nil {
		t.Fatal(err)
	}
	same(26)
	if read, err := f.q.Tally(f.ctx, "b1"); err != nil || read[odd.ID] != queue.StatusError {
		t.Fatalf("Tally counts the malformed result as %q (err %v), want error", read[odd.ID], err)
	}
	rows, bad, err := f.q.Results(f.ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Task == odd.ID && (r.Status != queue.StatusError || !strings.Contains(r.Message, `status "pending" is not a result's`) || len(bad) != 1) {
			t.Fatalf("Results shows %+v (bad values %v), want an error row for the malformed result", r, bad)
		}
	}
	// A result deleted (as a retry round does) leaves it.
	if _, err := f.env.Client.Delete(f.ctx, f.q.Keys().Result("b1", "garbage")); err != nil {
		t.Fatal(err)
	}
	same(25)
	// Nothing of the batch changes: Current returns once etcd confirms the
	// watch has seen everything up to now.
	if _, err := f.env.Client.Put(f.ctx, f.env.Prefix+"/elsewhere", ""); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer ccancel()
	if _, err := tally.Current(cctx); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedReadyIsQuarantinedAndEndsDead(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 3)
	bad := f.q.Keys().ReadyTask(queue.DefaultZone, 0, "b1", "garbage")
	if _, err := f.env.Client.Put(f.ctx, bad, "{not json"); err != nil {
		t.Fatal(err)
	}
	ready, badVals, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", 0), 10)
	if err != nil || len(ready) != 3 || len(badVals) != 1 || badVals[0].Key() != bad || !errors.Is(badVals[0].Err, queue.ErrBadValue) {
		t.Fatalf("ready %d, bad %+v, err %v", len(ready), badVals, err)
	}
	if err := f.q.QuarantineReady(f.ctx, badVals[0]); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, f.q.Keys().Quarantine(bad)); n != 1 {
		t.Fatal("not quarantined")
	}
	resp, err := f.env.Client.Get(f.ctx, f.q.Keys().Result("b1", "garbage"))
	if err != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"dead"`) {
		t.Fatalf("no dead result for the quarantined task: %v", err)
	}
}

func TestAbandonedUploadsAreCleanedAndCommittedOnesKept(t *testing.T) {
	f := setup(t)
	spec := f.submit(t, "kept", 5)
	fence, _ := f.lead(t)
	// A submit that died after writing its chunks and before its spec.
	k := f.q.Keys()
	for _, kv := range [][2]string{
		{k.BatchUploadStarted("died", "n1"), time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)},
		{k.BatchHostChunk("died", "n1", 0), "[]"},
		// One still uploading: too young to touch.
		{k.BatchUploadStarted("young", "n2"), time.Now().UTC().Format(time.RFC3339)},
		{k.BatchHostChunk("young", "n2", 0), "[]"},
	} {
		if _, err := f.env.Client.Put(f.ctx, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.q.CleanUploads(f.ctx, fence, time.Now().Add(-queue.AbandonedUploads))
	if err != nil || n != 1 {
		t.Fatalf("cleaned %d, err %v", n, err)
	}
	if got := f.count(t, k.Batch("died")); got != 0 {
		t.Fatalf("%d keys of the dead upload left", got)
	}
	if got := f.count(t, k.Batch("young")); got != 2 {
		t.Fatalf("young upload touched: %d keys", got)
	}
	if _, err := f.q.LoadHosts(f.ctx, spec); err != nil {
		t.Fatalf("committed batch lost its inventory: %v", err)
	}
}

func TestAdoptFindsAClaimWhoseReplyWasLost(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 3)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 3)
	got, err := f.q.Adopt(f.ctx, g.ID)
	if err != nil || got == nil || got.ClaimRev != g.ClaimRev || len(got.Running.Tasks) != 3 {
		t.Fatalf("adopt: %+v, %v", got, err)
	}
	// The adopted group commits like the original.
	if rej, err := f.q.Commit(f.ctx, finishAll(got, queue.StatusOK, "w")); err != nil || len(rej) != 0 {
		t.Fatal(rej, err)
	}
	if got, err := f.q.Adopt(f.ctx, "never-claimed"); err != nil || got != nil {
		t.Fatalf("adopt of a claim that did not land: %+v, %v", got, err)
	}
}

func TestRunningRecordHoldsTheClaimedTasks(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 5)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 5)
	same := func(g *queue.Group) {
		t.Helper()
		stored, err := f.q.Adopt(f.ctx, g.ID) // reads the running record back
		if err != nil || stored == nil {
			t.Fatalf("adopt: %+v, %v", stored, err)
		}
		got, want := stored.Running, g.Running
		if got.Worker != want.Worker || !got.ClaimedAt.Equal(want.ClaimedAt) || !got.Deadline.Equal(want.Deadline) ||
			!reflect.DeepEqual(got.Tasks, want.Tasks) {
			t.Fatalf("running record reads back as\n%+v\nwant\n%+v", got, want)
		}
	}
	same(g)
	// Requeued tasks carry their history into the next claim's record.
	s.Close()
	if _, _, err := f.q.RecoverGroup(f.ctx, fence, g.ID, policyOf(3), "lost", time.Now()); err != nil {
		t.Fatal(err)
	}
	s2 := f.session(t, 10)
	g2 := f.claim(t, s2.Lease(), "w2", 5)
	if len(g2.Running.Tasks) != 5 || len(g2.Running.Tasks[0].History) != 1 {
		t.Fatalf("second claim %+v", g2.Running)
	}
	same(g2)
}

func TestTasksOfAMalformedGroupEndDead(t *testing.T) {
	f := setup(t)
	spec, fence := f.submitAndShard(t, "b1", 4)
	s := f.session(t, 10)
	g := f.claim(t, s.Lease(), "w", 2)
	// The group's running record is corrupted, then its worker dies.
	if _, err := f.env.Client.Put(f.ctx, f.q.Keys().RunningGroup(g.ID), "{garbage"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, _, err := f.q.RecoverGroup(f.ctx, fence, g.ID, policyOf(3), "lost", time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, f.q.Keys().Quarantine(f.q.Keys().RunningGroup(g.ID))); n != 1 {
		t.Fatal("malformed running record not quarantined")
	}
	lost, err := f.q.Lost(f.ctx, spec)
	if err != nil || len(lost) != 2 {
		t.Fatalf("lost %v, err %v", lost, err)
	}
	if n, err := f.q.EndLost(f.ctx, fence, "b1", lost, "record lost"); err != nil || n != 2 {
		t.Fatalf("ended %d, err %v", n, err)
	}
	if lost, err := f.q.Lost(f.ctx, spec); err != nil || len(lost) != 0 {
		t.Fatalf("still lost %v, err %v", lost, err)
	}
	tally, err := f.q.Tally(f.ctx, "b1")
	if err != nil || len(tally) != 2 || tally[g.Running.Tasks[0].ID] != queue.StatusDead {
		t.Fatalf("tally %v, err %v", tally, err)
	}
}

func TestRecordsCarryTheirSchemaVersion(t *testing.T) {
	b, err := json.Marshal(queue.Task{Batch: "b", ID: "h", Attempt: 2})
	if err != nil || !strings.Contains(string(b), `"v":1`) || !strings.Contains(string(b), `"attempt":2`) {
		t.Fatalf("task JSON %s, err %v", b, err)
	}
	var back queue.Task
	if err := json.Unmarshal(b, &back); err != nil || back.Attempt != 2 || back.ID != "h" {
		t.Fatalf("round trip %+v, err %v", back, err)
	}
	newer := strings.Replace(string(b), `"v":1`, `"v":2`, 1)
	if err := json.Unmarshal([]byte(newer), &back); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("a newer record decoded: err %v", err)
	}
}

func TestNewerVersionReadyTaskIsQuarantined(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 1)
	key := f.q.Keys().ReadyTask(queue.DefaultZone, 0, "b1", "future")
	if _, err := f.env.Client.Put(f.ctx, key, `{"v":9,"batch":"b1","id":"future"}`); err != nil {
		t.Fatal(err)
	}
	_, bad, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", 0), 10)
	if err != nil || len(bad) != 1 || !errors.Is(bad[0].Err, queue.ErrBadValue) || !strings.Contains(bad[0].Err.Error(), "version 9") {
		t.Fatalf("bad %+v, err %v", bad, err)
	}
}

func TestResultRowsKeepTheirShape(t *testing.T) {
	b, err := json.Marshal([]queue.HostResult{{Task: "web1", Result: queue.Result{Host: "web1", Status: queue.StatusOK, Attempts: 1}}})
	if err != nil || !strings.Contains(string(b), `"task":"web1"`) || !strings.Contains(string(b), `"status":"ok"`) || strings.Contains(string(b), `"v":`) {
		t.Fatalf("row JSON %s, err %v", b, err)
	}
	var back []queue.HostResult
	if err := json.Unmarshal(b, &back); err != nil || back[0].Task != "web1" || back[0].Status != queue.StatusOK {
		t.Fatalf("round trip %+v, err %v", back, err)
	}
}

func TestCommitOfAZombieAndItsReclaimForOneTask(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 1)
	s := f.session(t, 10)
	old := f.claim(t, s.Lease(), "w", 1)
	if _, err := f.q.Revoke(f.ctx, fence, old.ID, old.ClaimRev); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.q.RecoverGroup(f.ctx, fence, old.ID, policyOf(3), "revoked", time.Now()); err != nil {
		t.Fatal(err)
	}
	cur := f.claim(t, s.Lease(), "w", 1) // the same task, attempt 2
	rej, err := f.q.Commit(f.ctx, []queue.Outcome{finish(old, 0, queue.StatusFail, "w"), finish(cur, 0, queue.StatusOK, "w")})
	if err != nil || len(rej) != 1 || rej[0].Group != old {
		t.Fatalf("rejected %d, err %v; want the zombie's outcome rejected and the re-claim's committed", len(rej), err)
	}
	rows, _, err := f.q.Results(f.ctx, "b1")
	if err != nil || rows[0].Status != queue.StatusOK || rows[0].Attempts != 2 {
		t.Fatalf("rows %+v, err %v", rows, err)
	}
}

func TestShardOfAStoppedBatchWritesResults(t *testing.T) {
	f := setup(t)
	spec := f.submit(t, "b1", 300) // more than one transaction's worth
	fence, _ := f.lead(t)
	if err := f.q.StopBatch(f.ctx, fence, "b1", queue.StatusCancelled); err != nil {
		t.Fatal(err)
	}
	if err := f.q.Shard(f.ctx, fence, spec); err != nil {
		t.Fatal(err)
	}
	tally, err := f.q.Tally(f.ctx, "b1")
	if err != nil || queue.SummaryOf(300, tally, time.Now()).Counts[queue.StatusCancelled] != 300 {
		t.Fatalf("tally %d results, err %v", len(tally), err)
	}
	if n := f.count(t, f.q.Keys().Ready()); n != 0 {
		t.Fatalf("%d ready keys for a stopped batch", n)
	}
}

// A warning is final and a pass: it does not count against --max-failures,
// and a batch whose hosts all passed, some with warnings, has not failed.
func TestWarnIsAFinalPass(t *testing.T) {
	w := queue.StatusWarn
	if !w.Final() || !w.Passed() || w.Failed() {
		t.Fatalf("warn: Final %v Passed %v Failed %v, want true true false", w.Final(), w.Passed(), w.Failed())
	}
	for _, s := range []queue.Status{queue.StatusFail, queue.StatusError, queue.StatusDead} {
		if s.Passed() || !s.Failed() {
			t.Errorf("%s: Passed %v Failed %v, want false true", s, s.Passed(), s.Failed())
		}
	}
	tests := []struct {
		tally          map[string]queue.Status
		failed, warned bool
	}{
		{map[string]queue.Status{"a": queue.StatusOK, "b": queue.StatusOK}, false, false},
		{map[string]queue.Status{"a": queue.StatusOK, "b": queue.StatusWarn}, false, true},
		{map[string]queue.Status{"a": queue.StatusWarn, "b": queue.StatusFail}, true, true},
		{map[string]queue.Status{"a": queue.StatusOK, "b": queue.StatusSkipped}, true, false},
	}
	for _, tt := range tests {
		s := queue.SummaryOf(len(tt.tally), tt.tally, time.Now())
		if s.Failed() != tt.failed || s.Warned() != tt.warned {
			t.Errorf("%v: Failed %v Warned %v, want %v %v", tt.tally, s.Failed(), s.Warned(), tt.failed, tt.warned)
		}
	}
}

func TestLoadBatchStateReadsOnlyItsOwnCancel(t *testing.T) {
	f := setup(t)
	f.submit(t, "b1", 3)
	f.submit(t, "b10", 3)
	if ok, err := f.q.Cancel(f.ctx, "b10"); err != nil || !ok {
		t.Fatalf("cancel b10: %v %v", ok, err)
	}
	st, err := f.q.LoadBatchState(f.ctx, "b1")
	if err != nil || st.Spec.ID != "b1" || st.Cancelled || st.Stop != "" {
		t.Fatalf("b1 loads as %+v (err %v), want its spec and no cancel: b10's cancel is not b1's", st, err)
	}
	if ok, err := f.q.CancelRequested(f.ctx, "b1"); err != nil || ok {
		t.Fatalf("CancelRequested(b1) = %v, %v after only b10 was cancelled", ok, err)
	}
	if st, err = f.q.LoadBatchState(f.ctx, "b10"); err != nil || !st.Cancelled {
		t.Fatalf("b10 loads as %+v (err %v), want cancelled", st, err)
	}
	if _, err := f.q.LoadBatchState(f.ctx, "nope"); !errors.Is(err, queue.ErrBatchNotFound) {
		t.Fatalf("an unknown batch loads with %v, want ErrBatchNotFound", err)
	}
}

func TestZoneStatusCountsEveryShardOfAWideBatch(t *testing.T) {
	f := setup(t)
	hs := hosts(300)
	for i := range hs {
		if i%3 == 0 {
			hs[i].Vars = map[string]string{"zone": "dc2"}
		}
	}
	spec, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "wide", Check: "noop", Hosts: hs, Shards: 150})
	if err != nil {
		t.Fatal(err)
	}
	fence, _ := f.lead(t)
	if err := f.q.Shard(f.ctx, fence, spec); err != nil {
		t.Fatal(err)
	}
	zones, err := f.q.ZoneStatus(f.ctx, "wide")
	if err != nil {
		t.Fatal(err)
	}
	if zones["dc2"].Pending != 100 || zones[queue.DefaultZone].Pending != 200 {
		t.Fatalf("pending by zone %+v, want dc2 100 and default 200 (150 shards: counted over several round trips)", zones)
	}
}

// TestAShardingWakeLooksAheadOfTheCursorOnly: after ResetAhead (a wake
// from sharding) a listing reads each unit from its cursor on, so a task
// made ready behind the cursor waits for the next Reset (any other wake,
// or the worker's poll), which reads behind the cursor once.
func TestAShardingWakeLooksAheadOfTheCursorOnly(t *testing.T) {
	f := setup(t)
	spec, _ := f.submitAndShard(t, "b1", 40)
	s := f.session(t, 10)
	cur := queue.NewReadyCursor()
	cur.SetBatches(map[string]queue.ListBatch{"b1": {Shards: spec.Shards}})
	order := queue.Assignment{}.ShardOrder("", 0)
	now := time.Now()
	dl := func(queue.Task) time.Time { return now.Add(time.Minute) }
	ready, _, err := f.q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 64)
	if err != nil || len(ready) != 40 {
		t.Fatalf("first listing: %d, err %v; want all 40", len(ready), err)
	}
	if g, err := f.q.Claim(f.ctx, s.Lease(), "w", "g1", ready, now, dl); err != nil || len(g.Running.Tasks) != 40 {
		t.Fatalf("claim: %+v, %v", g, err)
	}
	cur.Forget(ready)
	// Every unit's cursor now stands past its last task. One task made
	// ready before the cursor of its unit, one after it.
	shard := ready[0].Task.Shard
	put := func(id string) {
		t.Helper()
		task := queue.Task{Batch: "b1", ID: id, Zone: queue.DefaultZone, Shard: shard, Host: inventory.Host{Name: id, Address: "127.0.0.1"}, Attempt: 1}
		raw, err := json.Marshal(task)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.env.Client.Put(f.ctx, f.q.Keys().ReadyKey(task), string(raw)); err != nil {
			t.Fatal(err)
		}
	}
	put("a-behind")
	put("z-ahead")
	cur.ResetAhead()
	ahead, _, err := f.q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 64)
	if err != nil || len(ahead) != 1 || ahead[0].Task.ID != "z-ahead" {
		t.Fatalf("after ResetAhead: %v (err %v), want only z-ahead", ids(ahead), err)
	}
	cur.Forget(ahead)
	cur.Reset()
	behind, _, err := f.q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 64)
	if err != nil || !slices.Contains(ids(behind), "a-behind") {
		t.Fatalf("after Reset: %v (err %v), want a-behind", ids(behind), err)
	}
}

func ids(rs []queue.Ready) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Task.ID)
	}
	return out
}
