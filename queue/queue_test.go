package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
)

type fixture struct {
	env *etcdtest.Env
	q   *queue.Queue
	ctx context.Context
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

func (f *fixture) claimAll(t testing.TB, lease clientv3.LeaseID, worker string) []queue.Claimed {
	t.Helper()
	var all []queue.Claimed
	for {
		ready, bad, err := f.q.ListReady(f.ctx, 0, queue.MaxClaim)
		if err != nil || len(bad) > 0 {
			t.Fatalf("list ready: %v %v", err, bad)
		}
		if len(ready) == 0 {
			return all
		}
		got, err := f.q.Claim(f.ctx, lease, worker, ready, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
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
	// Only the winner's inventory chunks remain.
	if n := f.count(t, f.q.Keys().Batch("race")+"hosts/"); n != spec.Chunks {
		t.Fatalf("%d chunk keys left, want %d", n, spec.Chunks)
	}
}

func TestShardWritesEveryHostOnceAndIsFenced(t *testing.T) {
	f := setup(t)
	spec := f.submit(t, "b1", 1000)
	fence, sess := f.lead(t)
	if err := f.q.Shard(f.ctx, fence, spec); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, f.q.Keys().Tasks("b1")); n != 1000 {
		t.Fatalf("%d tasks, want 1000", n)
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
	if n := f.count(t, f.q.Keys().Tasks("b2")); n != 0 {
		t.Fatalf("stale leader wrote %d tasks", n)
	}
}

func TestShardResumesAfterLeaderChange(t *testing.T) {
	f := setup(t)
	spec := f.submit(t, "b1", 500)
	fence1, sess1 := f.lead(t)
	// The first leader shards under a context that ends after its first
	// transactions have landed.
	ctx, cancel := context.WithCancel(f.ctx)
	watch := f.env.Client.Watch(ctx, f.q.Keys().BatchProgress("b1"))
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
	if n := f.count(t, f.q.Keys().Tasks("b1")); n != 500 {
		t.Fatalf("%d tasks, want 500", n)
	}
	// Each task key was written exactly once: version 1.
	resp, err := f.env.Client.Get(f.ctx, f.q.Keys().Tasks("b1"), clientv3.WithPrefix())
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
	f.submitAndShard(t, "b1", 600)
	const workers = 6
	var wg sync.WaitGroup
	got := make([][]queue.Claimed, workers)
	for i := range workers {
		s := f.session(t, 10)
		wg.Go(func() {
			for {
				ready, _, err := f.q.ListReady(f.ctx, i%queue.DefaultShards, queue.MaxClaim)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ready) == 0 {
					return
				}
				c, err := f.q.Claim(f.ctx, s.Lease(), fmt.Sprint("w", i), ready, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				got[i] = append(got[i], c...)
			}
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for i, cs := range got {
		for _, c := range cs {
			if prev, dup := seen[c.Task.ID]; dup {
				t.Fatalf("task %s claimed by %s and w%d", c.Task.ID, prev, i)
			}
			seen[c.Task.ID] = fmt.Sprint("w", i)
		}
	}
	if len(seen) != 600 {
		t.Fatalf("%d tasks claimed, want 600", len(seen))
	}
	if n := f.count(t, f.q.Keys().Claims()); n != 600 {
		t.Fatalf("%d claim keys, want 600", n)
	}
}

func TestClaimFallsBackToWhatIsLeft(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 40)
	a, b := f.session(t, 10), f.session(t, 10)
	listed, _, err := f.q.ListReady(f.ctx, 0, 40)
	if err != nil || len(listed) != 40 {
		t.Fatalf("listed %d, err %v", len(listed), err)
	}
	// A takes every other task; B then claims from its stale listing.
	var half []queue.Ready
	for i := 0; i < len(listed); i += 2 {
		half = append(half, listed[i])
	}
	ca, err := f.q.Claim(f.ctx, a.Lease(), "a", half, time.Now())
	if err != nil || len(ca) != 20 {
		t.Fatalf("a claimed %d, err %v", len(ca), err)
	}
	cb, err := f.q.Claim(f.ctx, b.Lease(), "b", listed, time.Now())
	if err != nil || len(cb) != 20 {
		t.Fatalf("b claimed %d, err %v", len(cb), err)
	}
	for _, c := range cb {
		for _, o := range ca {
			if c.Task.ID == o.Task.ID {
				t.Fatalf("%s claimed twice", c.Task.ID)
			}
		}
	}
}

func TestCompleteIsFencedOnTheClaim(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 2)
	zombie := f.session(t, 10)
	claims := f.claimAll(t, zombie.Lease(), "zombie")
	if len(claims) != 2 {
		t.Fatalf("claimed %d", len(claims))
	}
	// The zombie's lease is revoked (as when it overran its TTL); the
	// scheduler requeues and a healthy worker claims and completes.
	if _, err := f.env.Client.Revoke(f.ctx, zombie.Lease()); err != nil {
		t.Fatal(err)
	}
	for _, c := range claims {
		if out, err := f.q.Recover(f.ctx, fence, "b1", c.Task.ID, 3, time.Now()); err != nil || out != queue.RecoverRequeued {
			t.Fatalf("recover %s: %v %v", c.Task.ID, out, err)
		}
	}
	healthy := f.session(t, 10)
	again := f.claimAll(t, healthy.Lease(), "healthy")
	if len(again) != 2 || again[0].Task.Attempt != 2 {
		t.Fatalf("reclaimed %d, attempt %d", len(again), again[0].Task.Attempt)
	}
	ok, err := f.q.Complete(f.ctx, again[0], queue.Result{Host: again[0].Task.Host.Name, Status: queue.StatusOK, Worker: "healthy"})
	if err != nil || !ok {
		t.Fatalf("healthy complete: %v %v", ok, err)
	}
	// The zombie wakes up and tries to commit both: both rejected.
	for _, c := range claims {
		ok, err := f.q.Complete(f.ctx, c, queue.Result{Host: c.Task.Host.Name, Status: queue.StatusFail, Worker: "zombie"})
		if err != nil || ok {
			t.Fatalf("zombie complete of %s: ok=%v err=%v, want rejected", c.Task.ID, ok, err)
		}
	}
	rows, _, err := f.q.Results(f.ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	byHost := map[string]queue.HostResult{}
	for _, r := range rows {
		byHost[r.Host] = r
	}
	if r := byHost[again[0].Task.Host.Name]; r.Status != queue.StatusOK || r.Worker != "healthy" {
		t.Fatalf("committed result overwritten: %+v", r)
	}
	if r := byHost[again[1].Task.Host.Name]; r.Status != queue.StatusRunning || r.Worker != "healthy" {
		t.Fatalf("second task: %+v, want running on healthy", r)
	}
}

func TestRecoverGivesUpAfterMaxAttempts(t *testing.T) {
	f := setup(t)
	_, fence := f.submitAndShard(t, "b1", 1)
	for attempt := 1; attempt <= 2; attempt++ {
		s := f.session(t, 10)
		c := f.claimAll(t, s.Lease(), "w")
		if len(c) != 1 || c[0].Task.Attempt != attempt {
			t.Fatalf("attempt %d: claimed %+v", attempt, c)
		}
		s.Close() // revokes the lease: the claim goes
		want := queue.RecoverRequeued
		if attempt == 2 {
			want = queue.RecoverGaveUp
		}
		if out, err := f.q.Recover(f.ctx, fence, "b1", c[0].Task.ID, 2, time.Now()); err != nil || out != want {
			t.Fatalf("attempt %d: recover = %v, %v; want %v", attempt, out, err, want)
		}
	}
	rows, _, err := f.q.Results(f.ctx, "b1")
	if err != nil || len(rows) != 1 || rows[0].Status != queue.StatusError || rows[0].Attempts != 2 {
		t.Fatalf("rows = %+v, err %v", rows, err)
	}
	// Recovering a finished task does nothing.
	if out, err := f.q.Recover(f.ctx, fence, "b1", rows[0].Task, 2, time.Now()); err != nil || out != queue.RecoverNone {
		t.Fatalf("recover finished: %v %v", out, err)
	}
}

func TestOrphansAndFinish(t *testing.T) {
	f := setup(t)
	spec, fence := f.submitAndShard(t, "b1", 5)
	s := f.session(t, 10)
	claims := f.claimAll(t, s.Lease(), "w")
	if len(claims) != 5 {
		t.Fatalf("claimed %d", len(claims))
	}
	for _, c := range claims[:3] {
		if ok, err := f.q.Complete(f.ctx, c, queue.Result{Host: c.Task.Host.Name, Status: queue.StatusOK}); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if o, err := f.q.Orphans(f.ctx, spec); err != nil || len(o) != 0 {
		t.Fatalf("orphans while running: %v %v", o, err)
	}
	s.Close()
	o, err := f.q.Orphans(f.ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(o)
	want := []string{claims[3].Task.ID, claims[4].Task.ID}
	sort.Strings(want)
	if strings.Join(o, ",") != strings.Join(want, ",") {
		t.Fatalf("orphans = %v, want %v", o, want)
	}
	tally, err := f.q.Tally(f.ctx, "b1")
	if err != nil || len(tally) != 3 {
		t.Fatalf("tally %v %v", tally, err)
	}
	sum := queue.SummaryOf(5, tally, time.Now())
	if err := f.q.Finish(f.ctx, fence, "b1", sum); err != nil {
		t.Fatal(err)
	}
	if err := f.q.Finish(f.ctx, fence, "b1", queue.Summary{Total: 99}); err != nil {
		t.Fatal(err)
	}
	got, done, err := f.q.Summary(f.ctx, "b1")
	if err != nil || !done || got.Total != 5 || got.Counts[queue.StatusOK] != 3 {
		t.Fatalf("summary = %+v done=%v err=%v (must be written once)", got, done, err)
	}
	if n := f.count(t, f.q.Keys().Active()); n != 0 {
		t.Fatalf("finished batch still active")
	}
}

func TestMalformedValuesAreReportedNotFatal(t *testing.T) {
	f := setup(t)
	f.submitAndShard(t, "b1", 3)
	bad := f.q.Keys().ReadyTask(0, "b1", "garbage")
	if _, err := f.env.Client.Put(f.ctx, bad, "{not json"); err != nil {
		t.Fatal(err)
	}
	ready, badVals, err := f.q.ListReady(f.ctx, 0, 10)
	if err != nil || len(ready) != 3 || len(badVals) != 1 || badVals[0].Key != bad || !errors.Is(badVals[0].Err, queue.ErrBadValue) {
		t.Fatalf("ready %d, bad %+v, err %v", len(ready), badVals, err)
	}
}
