package worker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
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
