package throughput

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
)

// BenchmarkSmallBatchBesideLarge measures fair service end to end, on one
// embedded etcd (fsync on) with one scheduler and 4 workers: a large noop
// batch (FAIRBENCH_HOSTS hosts, default 300,000) is submitted, then a
// 10-host noop batch, timed from submit to its summary, at normal
// priority and at priority high, each on a fresh cluster and large batch.
// The small batch is submitted either once the large batch's first
// results are in (it is still sharding: the scenario), or once it
// is wholly sharded (the leader is free, so the time is the workers').
// Each time is split in two: from submit until the leader began sharding
// the small batch, and from then until the small batch's last result.
func BenchmarkSmallBatchBesideLarge(b *testing.B) {
	n := 300000
	if v := os.Getenv("FAIRBENCH_HOSTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("FAIRBENCH_HOSTS=%q: want a positive number of hosts", v)
		}
	}
	newClient := startEtcd(b, etcdserver.Config{CompactionRetention: time.Minute})
	big := make([]inventory.Host, n)
	for i := range big {
		big[i] = inventory.Host{Name: fmt.Sprintf("sweep-%07d", i), Address: "127.0.0.1"}
	}
	small := make([]inventory.Host, 10)
	for i := range small {
		small[i] = inventory.Host{Name: fmt.Sprintf("urgent-%02d", i), Address: "127.0.0.1"}
	}
	type scenario struct {
		name, metric                         string
		sharded                              bool // submit the small batch once the large one is wholly sharded
		priority                             int
		total, leader, workers, done, submit []float64
	}
	scenarios := []*scenario{
		{name: "while it shards, priority normal", metric: "normal-s", priority: queue.PriorityNormal},
		{name: "while it shards, priority high", metric: "high-s", priority: queue.PriorityHigh},
		{name: "once it is sharded, priority normal", metric: "normal-sharded-s", sharded: true, priority: queue.PriorityNormal},
		{name: "once it is sharded, priority high", metric: "high-sharded-s", sharded: true, priority: queue.PriorityHigh},
	}
	for i := 0; b.Loop(); i++ {
		for j, sc := range scenarios {
			ctx, q, stop := startCluster(b, newClient, fmt.Sprintf("/fair-%d-%d", i, j), nil)
			start := time.Now()
			if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "sweep", Check: "noop", Hosts: big}); err != nil {
				stop()
				b.Fatal(err)
			}
			sc.submit = append(sc.submit, time.Since(start).Seconds())
			if sc.sharded {
				waitSharded(b, ctx, q, "sweep", n)
			} else {
				waitResults(b, ctx, q, "sweep", 1)
			}
			// The urgent batch's progress keys are written by the leader's
			// sharding transactions: the first says sharding began.
			wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
			sharding := q.Client().Watch(wctx, q.Keys().BatchProgress("urgent"), clientv3.WithPrefix())
			t0 := time.Now()
			if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "urgent", Check: "noop", Hosts: small, Priority: sc.priority}); err != nil {
				cancel()
				stop()
				b.Fatal(err)
			}
			if _, ok := <-sharding; !ok {
				cancel()
				stop()
				b.Fatal("the leader did not begin sharding the small batch within 30 minutes")
			}
			cancel()
			sharded := time.Since(t0)
			waitResults(b, ctx, q, "urgent", len(small))
			ran := time.Since(t0)
			sc.done = append(sc.done, float64(countResults(b, ctx, q, "sweep")))
			waitSummary(b, q, "urgent")
			sc.total = append(sc.total, time.Since(t0).Seconds())
			sc.leader = append(sc.leader, sharded.Seconds())
			sc.workers = append(sc.workers, (ran - sharded).Seconds())
			stop()
		}
	}
	fmt.Fprintf(os.Stderr, "\nfair service, %d run(s) each, medians: a 10-host noop batch submitted beside a %d-host noop batch\n"+
		"(1 scheduler, %d workers, one embedded etcd, fsync on; the large batch's submit took %.1f s), from submit to summary:\n",
		len(scenarios[0].total), n, workers, median(scenarios[0].submit))
	for _, sc := range scenarios {
		b.ReportMetric(median(sc.total), sc.metric)
		fmt.Fprintf(os.Stderr, "  %-36s %6.2f s = %6.2f s until the leader began sharding it + %.2f s from then to its last result + the summary "+
			"(large batch: %.0f hosts done by then)\n", sc.name+":", median(sc.total), median(sc.leader), median(sc.workers), median(sc.done))
	}
}

// waitSharded waits until the leader has written every one of batch's n
// hosts to its ready (or held) queues: its lanes' progress adds up to n.
func waitSharded(b *testing.B, ctx context.Context, q *queue.Queue, batch string, n int) {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	prefix := q.Keys().BatchProgress(batch)
	wch := q.Client().Watch(wctx, prefix, clientv3.WithPrefix())
	for {
		sum, err := q.Progress(wctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		if sum >= n {
			return
		}
		if _, ok := <-wch; !ok {
			b.Fatalf("batch %s was not sharded within 30 minutes (%d of %d hosts)", batch, sum, n)
		}
	}
}

// waitResults waits until batch has at least n results.
func waitResults(b *testing.B, ctx context.Context, q *queue.Queue, batch string, n int) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	prefix := q.Keys().BatchResults(batch)
	wch := q.Client().Watch(wctx, prefix, clientv3.WithPrefix())
	for countResults(b, wctx, q, batch) < n {
		if _, ok := <-wch; !ok {
			b.Fatalf("batch %s had fewer than %d results after 10 minutes", batch, n)
		}
	}
}

// countResults counts batch's results.
func countResults(b *testing.B, ctx context.Context, q *queue.Queue, batch string) int {
	resp, err := q.Client().Get(ctx, q.Keys().BatchResults(batch), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		b.Fatal(err)
	}
	return int(resp.Count)
}
