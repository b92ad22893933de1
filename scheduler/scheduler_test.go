package scheduler_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

type fixture struct {
	env *etcdtest.Env
	q   *queue.Queue
	ctx context.Context
}

func setup(t *testing.T) *fixture {
	t.Helper()
	env := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return &fixture{env: env, q: queue.New(env.Client, env.Prefix), ctx: ctx}
}

// running is a scheduler started by a test, with the fences it led under.
type running struct {
	fences chan queue.Fence
	stop   func()
}

// start runs a scheduler on its own client until the test ends or stop.
func (f *fixture) start(t *testing.T, id string) *running {
	return f.startWith(t, id, func(*scheduler.Config) {})
}

func (f *fixture) startWith(t *testing.T, id string, adjust func(*scheduler.Config)) *running {
	t.Helper()
	r := &running{fences: make(chan queue.Fence, 16)}
	cfg := scheduler.Config{
		ID: id, SessionTTL: 10 * time.Second, Log: zerolog.Nop(),
		OnLeading: func(fc queue.Fence) { r.fences <- fc },
	}
	adjust(&cfg)
	s, err := scheduler.New(queue.New(etcdtest.NewClient(t), f.env.Prefix), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(r.stop)
	return r
}

func (r *running) leading(t *testing.T) queue.Fence {
	t.Helper()
	select {
	case fc := <-r.fences:
		return fc
	case <-time.After(30 * time.Second):
		t.Fatal("scheduler did not start leading within 30s")
		return queue.Fence{}
	}
}

func hosts(n int) []inventory.Host {
	out := make([]inventory.Host, n)
	for i := range out {
		out[i] = inventory.Host{Name: fmt.Sprintf("h%03d", i), Address: "127.0.0.1"}
	}
	return out
}

func TestOneLeaderAndFailover(t *testing.T) {
	f := setup(t)
	ma, mb := metrics.NewScheduler(prometheus.NewRegistry()), metrics.NewScheduler(prometheus.NewRegistry())
	a := f.startWith(t, "a", func(c *scheduler.Config) { c.Metrics = ma })
	fa := a.leading(t)
	l, ok, err := f.q.CurrentLeader(f.ctx)
	if err != nil || !ok || l.ID != "a" || l.Rev != fa.Rev {
		t.Fatalf("leader = %+v ok=%v err=%v, want a at rev %d", l, ok, err, fa.Rev)
	}
	b := f.startWith(t, "b", func(c *scheduler.Config) { c.Metrics = mb })
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Election(), 30*time.Second, "b to campaign", func(n int) bool { return n == 2 })
	select {
	case <-b.fences:
		t.Fatal("b leads while a is alive")
	default:
	}
	if la, lb := testutil.ToFloat64(ma.Leader), testutil.ToFloat64(mb.Leader); la != 1 || lb != 0 {
		t.Fatalf("patrol_scheduler_leader: a %v, b %v; want 1 and 0", la, lb)
	}
	a.stop() // resigns by revoking its lease
	fb := b.leading(t)
	if fb.Rev <= fa.Rev {
		t.Fatalf("b's fence rev %d not after a's %d", fb.Rev, fa.Rev)
	}
	l, ok, err = f.q.CurrentLeader(f.ctx)
	if err != nil || !ok || l.ID != "b" {
		t.Fatalf("leader = %+v ok=%v err=%v, want b", l, ok, err)
	}
	b.stop()
	for name, m := range map[string]*metrics.Scheduler{"a": ma, "b": mb} {
		if got := testutil.ToFloat64(m.Leader); got != 0 {
			t.Errorf("%s stopped: patrol_scheduler_leader = %v, want 0", name, got)
		}
		if got := testutil.ToFloat64(m.LeaderChanges); got != 1 {
			t.Errorf("%s: patrol_scheduler_leader_changes_total = %v, want 1", name, got)
		}
		if got := testutil.CollectAndCount(m.CampaignDuration); got != 1 {
			t.Errorf("%s: campaign duration series = %v, want 1", name, got)
		}
	}
}

func TestLeaderWhoseSessionIsRevokedStepsDownAndCampaignsAgain(t *testing.T) {
	f := setup(t)
	// A short TTL: the session learns of the revoke at its next keepalive,
	// a third of the TTL later.
	a := f.startWith(t, "a", func(c *scheduler.Config) { c.SessionTTL = 2 * time.Second })
	first := a.leading(t)
	// Revoke the leader's lease from outside, as etcd does when it expires.
	resp, err := f.env.Client.Get(f.ctx, first.Key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("election key: %v", err)
	}
	if _, err := f.env.Client.Revoke(f.ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	second := a.leading(t)
	if second.Rev <= first.Rev || second.Key == first.Key {
		t.Fatalf("new term %+v does not follow %+v", second, first)
	}
	// The old fence is dead: a write under it is rejected.
	spec, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "late", Check: "noop", Hosts: hosts(1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.q.Shard(f.ctx, first, spec); err != queue.ErrNotLeader {
		t.Fatalf("shard under the old fence: %v, want ErrNotLeader", err)
	}
}

func TestShardsRequeuesLostWorkAndFinishesOnce(t *testing.T) {
	f := setup(t)
	f.start(t, "s").leading(t)
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b1", Check: "noop", Hosts: hosts(50)}); err != nil {
		t.Fatal(err)
	}
	ready := f.q.Keys().Ready()
	etcdtest.WaitFor(t, f.env.Client, ready, 30*time.Second, "50 ready tasks", func(n int) bool { return n == 50 })

	// A worker claims everything, finishes 20, and dies.
	sess, err := concurrency.NewSession(f.env.Client, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	g := f.claim(t, sess.Lease(), 50)
	if g == nil || len(g.Running.Tasks) != 50 {
		t.Fatalf("claimed %+v", g)
	}
	var outs []queue.Outcome
	for i := range 20 {
		outs = append(outs, outcome(g, i, queue.StatusOK))
	}
	if rej, err := f.q.Commit(f.ctx, outs); len(rej) != 0 || err != nil {
		t.Fatal(rej, err)
	}
	sess.Close() // the lease goes, and with it the claim
	etcdtest.WaitFor(t, f.env.Client, ready, 30*time.Second, "30 requeued tasks", func(n int) bool { return n == 30 })

	sess2, err := concurrency.NewSession(f.env.Client, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer sess2.Close()
	g2 := f.claim(t, sess2.Lease(), 50)
	outs = nil
	for i, task := range g2.Running.Tasks {
		if task.Attempt != 2 || len(task.History) != 1 {
			t.Fatalf("requeued task %s: attempt %d, history %v", task.ID, task.Attempt, task.History)
		}
		outs = append(outs, outcome(g2, i, queue.StatusFail))
	}
	if rej, err := f.q.Commit(f.ctx, outs); len(rej) != 0 || err != nil {
		t.Fatal(rej, err)
	}
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().BatchSummary("b1"), 30*time.Second, "the summary", func(n int) bool { return n == 1 })
	sum, done, err := f.q.Summary(f.ctx, "b1")
	if err != nil || !done || sum.Total != 50 || sum.Counts[queue.StatusOK] != 20 || sum.Counts[queue.StatusFail] != 30 {
		t.Fatalf("summary %+v done=%v err=%v", sum, done, err)
	}
	resp, err := f.env.Client.Get(f.ctx, f.q.Keys().BatchSummary("b1"))
	if err != nil || resp.Kvs[0].Version != 1 {
		t.Fatalf("summary written more than once: %v", err)
	}
	if keys := etcdtest.Keys(t, f.env.Client, f.q.Keys().Active()); len(keys) != 0 {
		t.Fatalf("finished batch still active: %v", keys)
	}
}

func TestSweepRecoversWorkLostWhileNoSchedulerLed(t *testing.T) {
	f := setup(t)
	s := f.start(t, "first")
	s.leading(t)
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b1", Check: "noop", Hosts: hosts(10)}); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Ready(), 30*time.Second, "10 ready tasks", func(n int) bool { return n == 10 })
	s.stop()
	// With no scheduler running, a worker claims everything and dies.
	sess, err := concurrency.NewSession(f.env.Client, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	if g := f.claim(t, sess.Lease(), 10); g == nil || len(g.Running.Tasks) != 10 {
		t.Fatalf("claimed %+v", g)
	}
	sess.Close()
	// The next leader's first sweep finds the lost group.
	f.start(t, "second").leading(t)
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Ready(), 30*time.Second, "10 recovered tasks", func(n int) bool { return n == 10 })
}

func TestOverdueClaimIsRevokedAndRequeued(t *testing.T) {
	f := setup(t)
	m := metrics.NewScheduler(prometheus.NewRegistry())
	s := f.startWith(t, "s", func(c *scheduler.Config) {
		c.SweepInterval, c.RevokeGrace, c.Metrics = 100*time.Millisecond, time.Millisecond, m
	})
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b1", Check: "noop", Hosts: hosts(3)}); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Ready(), 30*time.Second, "3 ready tasks", func(n int) bool { return n == 3 })
	sess, err := concurrency.NewSession(f.env.Client, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	// The worker is alive (its lease is kept) but its attempt's deadline
	// is already past: the scheduler revokes the claim.
	ready, _, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", 0), 3)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	g, err := f.q.Claim(f.ctx, sess.Lease(), "slow", "slow-1", ready, past, func(queue.Task) time.Time { return past })
	if err != nil || g == nil {
		t.Fatal(g, err)
	}
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Ready(), 30*time.Second, "3 requeued tasks", func(n int) bool { return n == 3 })
	// The slow worker's late commit is rejected.
	var outs []queue.Outcome
	for i := range g.Running.Tasks {
		outs = append(outs, outcome(g, i, queue.StatusOK))
	}
	if rej, err := f.q.Commit(f.ctx, outs); err != nil || len(rej) != 3 {
		t.Fatalf("late commit: rejected %d, err %v", len(rej), err)
	}
	again, _, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", 0), 3)
	if err != nil || len(again) != 3 || again[0].Task.History[0].Message != "claim revoked: the attempt overran its timeout" {
		t.Fatalf("requeued %+v, err %v", again, err)
	}
	s.stop()
	if got := testutil.ToFloat64(m.ClaimsRevoked); got != 1 {
		t.Errorf("patrol_scheduler_claims_revoked_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.TasksRequeued); got != 3 {
		t.Errorf("patrol_scheduler_tasks_requeued_total = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.LeaseExpirations); got != 0 {
		t.Errorf("patrol_scheduler_lease_expirations_total = %v, want 0: the slow worker's lease is alive", got)
	}
}

func outcome(g *queue.Group, i int, st queue.Status) queue.Outcome {
	t := g.Running.Tasks[i]
	return queue.Outcome{Group: g, Index: i, Result: &queue.Result{Host: t.Host.Name, Status: st, Attempts: t.Attempt, Worker: "test"}}
}

var groups atomic.Int64

func (f *fixture) claim(t *testing.T, lease clientv3.LeaseID, n int) *queue.Group {
	t.Helper()
	ready, _, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", 0), n)
	if err != nil {
		t.Fatal(err)
	}
	if len(ready) == 0 {
		return nil
	}
	now := time.Now()
	g, err := f.q.Claim(f.ctx, lease, "test-worker", fmt.Sprint("g", groups.Add(1)), ready, now, func(queue.Task) time.Time { return now.Add(time.Minute) })
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestCleanStopIsNotALeaseExpiry: a worker that stops cleanly says so
// before revoking its lease, and the leader does not count it; a worker
// whose lease goes without that (a crash) is counted. The crash comes
// second, so once it is counted the clean stop has been seen too.
func TestCleanStopIsNotALeaseExpiry(t *testing.T) {
	f := setup(t)
	m := metrics.NewScheduler(prometheus.NewRegistry())
	s := f.startWith(t, "s", func(c *scheduler.Config) { c.Metrics = m })
	s.leading(t)

	w, err := worker.New(queue.New(etcdtest.NewClient(t), f.env.Prefix), worker.Config{ID: "clean", LeaseTTL: 10 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	// The leader knows the worker once it has given it shards.
	if _, err := etcdtest.Wait(f.ctx, f.env.Client, f.q.Keys().Assignment(queue.DefaultZone), func(r *clientv3.GetResponse) bool {
		if len(r.Kvs) != 1 {
			return false
		}
		a, err := queue.DecodeAssignment(r.Kvs[0].Value)
		return err == nil && len(a.Workers["clean"]) > 0
	}); err != nil {
		t.Fatalf("waiting for the leader to assign shards to the worker: %v", err)
	}
	cancel()
	wg.Wait() // drained, marked stopping, lease revoked

	crashed, err := concurrency.NewSession(f.env.Client, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.q.Register(f.ctx, crashed.Lease(), queue.WorkerInfo{ID: "crashed", Zone: queue.DefaultZone}); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Workers(), 30*time.Second, "the crashed worker's registration", func(n int) bool { return n == 1 })
	crashed.Orphan()
	if _, err := f.env.Client.Revoke(f.ctx, crashed.Lease()); err != nil { // as etcd does when the lease expires
		t.Fatal(err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(m.LeaseExpirations) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the crashed worker's lease expiry was not counted within 30s")
		}
		select {
		case <-f.ctx.Done():
			t.Fatal(f.ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.stop()
	if got := testutil.ToFloat64(m.LeaseExpirations); got != 1 {
		t.Fatalf("patrol_scheduler_lease_expirations_total = %v, want 1: the crash, not the clean stop", got)
	}
}
