package scheduler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

// runWorker runs an in-process worker until the test ends.
func (f *fixture) runWorker(t *testing.T, id string) {
	t.Helper()
	w, err := worker.New(queue.New(etcdtest.NewClient(t), f.env.Prefix), worker.Config{ID: id, LeaseTTL: 10 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestASmallBatchIsNotHeldBehindOneBeingSharded holds one batch's sharding
// (as sharding a million hosts would) and checks that a batch submitted
// after it is sharded, run, counted and finished meanwhile: the leader's
// duties do not wait for each other.
func TestASmallBatchIsNotHeldBehindOneBeingSharded(t *testing.T) {
	f := setup(t)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer scheduler.SetShardHook(func(ctx context.Context, batch string) {
		if batch != "big" {
			return
		}
		once.Do(func() { close(held) })
		select {
		case <-release:
		case <-ctx.Done():
		}
	})()
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "big", Check: "noop", Hosts: hosts(200)}); err != nil {
		t.Fatal(err)
	}
	f.runWorker(t, "w1")
	f.start(t, "s").leading(t)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the big batch's sharding did not start within 30s")
	}
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "small", Check: "noop", Hosts: hosts(5)}); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().BatchSummary("small"), 30*time.Second, "the small batch's summary", func(n int) bool { return n == 1 })
	if _, done, err := f.q.Summary(f.ctx, "big"); err != nil || done {
		t.Fatalf("big batch finished (%v, %v) while its sharding was held", done, err)
	}
	if n := len(etcdtest.Keys(t, f.env.Client, f.q.Keys().BatchProgress("big"))); n != 0 {
		t.Fatalf("big batch has %d sharding lanes written while its sharding was held", n)
	}
	close(release)
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().BatchSummary("big"), 30*time.Second, "the big batch's summary", func(n int) bool { return n == 1 })
	if s, _, err := f.q.Summary(f.ctx, "big"); err != nil || s.Counts[queue.StatusOK] != 200 {
		t.Fatalf("big batch summary %+v, %v", s, err)
	}
}

// TestLeaderPublishesResultCounts: while a batch runs, the counts that
// `patrol status` reads follow its results, from the leader's tally.
func TestLeaderPublishesResultCounts(t *testing.T) {
	f := setup(t)
	f.start(t, "s").leading(t)
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b", Check: "noop", Hosts: hosts(10)}); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Ready(), 30*time.Second, "10 ready tasks", func(n int) bool { return n == 10 })
	sess, err := concurrency.NewSession(f.env.Client, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	g := f.claim(t, sess.Lease(), 4)
	var outs []queue.Outcome
	for i := range g.Running.Tasks {
		outs = append(outs, outcome(g, i, queue.StatusFail))
	}
	if rej, err := f.q.Commit(f.ctx, outs); len(rej) != 0 || err != nil {
		t.Fatal(rej, err)
	}
	wctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	_, err = etcdtest.Wait(wctx, f.env.Client, f.q.Keys().BatchCounts("b"), func(*clientv3.GetResponse) bool {
		pub, ok, err := f.q.ResultCounts(wctx, "b")
		return err == nil && ok && pub.Counts[queue.StatusFail] == len(outs)
	})
	if err != nil {
		t.Fatalf("published counts never showed %d fail: %v", len(outs), err)
	}
	c, _, _, err := f.q.Count(f.ctx, "b")
	if err != nil || c[queue.StatusFail] != len(outs) || c[queue.StatusPending] != 10-len(outs) {
		t.Fatalf("count %v, %v", c, err)
	}
}
