package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

// TestABatchSubmittedDuringALargeOneDoesNotWaitForIt: a small batch
// submitted while a larger one runs (its ID sorts after, so its tasks
// queue behind the large one's in every shard) finishes while most of the
// large batch is still to run: the worker's listings take from both.
func TestABatchSubmittedDuringALargeOneDoesNotWaitForIt(t *testing.T) {
	f := setup(t)
	f.worker(t, "w", 4)
	const big = 400
	bigHosts := make([]inventory.Host, big)
	for i := range bigHosts {
		bigHosts[i] = inventory.Host{Name: fmt.Sprintf("sweep-%03d", i), Address: "127.0.0.1"}
	}
	f.submit(t, "a-sweep", "noop", map[string]string{"sleep": "20ms"}, bigHosts)
	// The sweep runs: some of its results are in.
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().BatchResults("a-sweep"), 30*time.Second, "the sweep to start", func(n int) bool { return n >= 20 })
	f.submit(t, "b-urgent", "noop", nil, names(8))
	rows := f.waitDone(t, "b-urgent")
	done := len(etcdtest.Keys(t, f.env.Client, f.q.Keys().BatchResults("a-sweep")))
	if len(rows) != 8 {
		t.Fatalf("urgent batch: %d results, want 8", len(rows))
	}
	t.Logf("the urgent batch finished with %d of the sweep's %d hosts done", done, big)
	if done > big*3/4 {
		t.Fatalf("the urgent batch finished only once %d of the sweep's %d hosts were done: it waited behind the sweep", done, big)
	}
	f.waitDone(t, "a-sweep")
}

// TestParallelCapHoldsBesideAnotherBatch: a batch capped by --parallel
// keeps to its cap while another batch runs beside it, and the other
// batch is not held back by the capped one's held tasks.
func TestParallelCapHoldsBesideAnotherBatch(t *testing.T) {
	f := setup(t)
	url, release, peak := holdingTarget(t)
	f.worker(t, "w1", 8)
	f.worker(t, "w2", 8)
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "capped", Check: "http", Params: map[string]string{"url": url},
		Hosts: names(20), Policy: queue.Policy{Parallel: 3}}); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Held(), 30*time.Second, "17 held tasks", func(n int) bool { return n == 17 })
	// Another batch, of high priority, runs to the end while the capped
	// one's three checks hang.
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "other", Check: "noop", Hosts: names(30), Priority: queue.PriorityHigh}); err != nil {
		t.Fatal(err)
	}
	if rows := f.waitDone(t, "other"); len(rows) != 30 {
		t.Fatalf("other batch: %d results, want 30", len(rows))
	}
	if n := len(etcdtest.Keys(t, f.env.Client, f.q.Keys().BatchResults("capped"))); n != 0 {
		t.Fatalf("%d of the capped batch's hosts finished while its checks hang", n)
	}
	release()
	rows := f.waitDone(t, "capped")
	if p := peak(); len(rows) != 20 || p > 3 || p == 0 {
		t.Fatalf("%d rows, peak %d checks at once, want at most 3", len(rows), p)
	}
}

// TestAWorkerListsEveryShardOfABatchBeyondItsAssignment: a batch spread
// over more shards than the zone's assignment says (the leader has not
// grown the assignment yet, or is gone) still runs to its last host: a
// worker's listings cover every shard of the batches it knows.
func TestAWorkerListsEveryShardOfABatchBeyondItsAssignment(t *testing.T) {
	env := etcdtest.New(t)
	q := queue.New(env.Client, env.Prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n, shards = 300, 120
	hosts := make([]inventory.Host, n)
	for i := range hosts {
		hosts[i] = inventory.Host{Name: fmt.Sprintf("wide-%03d", i), Address: "127.0.0.1"}
	}
	if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "wide", Check: "noop", Hosts: hosts, Shards: shards}); err != nil {
		t.Fatal(err)
	}
	// A leader shards it, then goes; the assignment it leaves is put back
	// to the default's shards.
	s, err := scheduler.New(queue.New(etcdtest.NewClient(t), env.Prefix), scheduler.Config{ID: "s", SessionTTL: 10 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopLeader := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(sctx) })
	etcdtest.WaitFor(t, env.Client, q.Keys().ReadyZone(queue.DefaultZone), 30*time.Second, "the batch to be sharded", func(k int) bool { return k == n })
	stopLeader()
	wg.Wait()
	a := queue.Assign(queue.DefaultShards, []string{"w"})
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.Put(ctx, q.Keys().Assignment(queue.DefaultZone), string(raw)); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(queue.New(etcdtest.NewClient(t), env.Prefix), worker.Config{ID: "w", Concurrency: 8, DrainTimeout: time.Nanosecond, LeaseTTL: 10 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	defer func() { stopWorker(); wg.Wait() }()
	wg.Go(func() { w.Run(wctx) })
	etcdtest.WaitFor(t, env.Client, q.Keys().BatchResults("wide"), 30*time.Second, "every host's result", func(k int) bool { return k == n })
}
