package throughput

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/queue"
)

// BenchmarkSmallBatchBesideLarge measures fair service end to end, on one
// embedded etcd (fsync on) with one scheduler and 4 workers: a large noop
// batch (FAIRBENCH_HOSTS hosts, default 300,000) is submitted, and once its
// first results are in, a 10-host noop batch, timed from submit to its
// summary while the large batch is still sharding and running; once at
// normal priority and once, on a fresh cluster and large batch, at
// priority high. Each time is split in two: from submit until the leader
// began sharding the small batch (the leader's part), and from then until
// the small batch's last result (the workers' part: the listings).
func BenchmarkSmallBatchBesideLarge(b *testing.B) {
	n := 300000
	if v := os.Getenv("FAIRBENCH_HOSTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("FAIRBENCH_HOSTS=%q: want a positive number of hosts", v)
		}
	}
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: b.TempDir(), Log: zerolog.Nop(), CompactionRetention: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	newClient := func() *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second,
			Logger: logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
		})
		if err != nil {
			b.Fatal(err)
		}
		return cli
	}
	big := make([]inventory.Host, n)
	for i := range big {
		big[i] = inventory.Host{Name: fmt.Sprintf("sweep-%07d", i), Address: "127.0.0.1"}
	}
	small := make([]inventory.Host, 10)
	for i := range small {
		small[i] = inventory.Host{Name: fmt.Sprintf("urgent-%02d", i), Address: "127.0.0.1"}
	}
	type figures struct{ total, leader, workers, done, submit []float64 }
	runs := map[int]*figures{queue.PriorityNormal: {}, queue.PriorityHigh: {}}
	for i := 0; b.Loop(); i++ {
		for _, prio := range []int{queue.PriorityNormal, queue.PriorityHigh} {
			f := runs[prio]
			ctx, q, stop := startCluster(b, newClient, fmt.Sprintf("/fair-%d-%d", i, prio+10), nil)
			start := time.Now()
			if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "sweep", Check: "noop", Hosts: big}); err != nil {
				stop()
				b.Fatal(err)
			}
			f.submit = append(f.submit, time.Since(start).Seconds())
			waitResults(b, ctx, q, "sweep", 1)
			// The urgent batch's progress keys are written by the leader's
			// sharding transactions: the first says sharding began.
			wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
			sharding := q.Client().Watch(wctx, q.Keys().BatchProgress("urgent"), clientv3.WithPrefix())
			t0 := time.Now()
			if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "urgent", Check: "noop", Hosts: small, Priority: prio}); err != nil {
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
			f.done = append(f.done, float64(countResults(b, ctx, q, "sweep")))
			waitSummary(b, q, "urgent")
			f.total = append(f.total, time.Since(t0).Seconds())
			f.leader = append(f.leader, sharded.Seconds())
			f.workers = append(f.workers, (ran - sharded).Seconds())
			stop()
		}
	}
	nf, hf := runs[queue.PriorityNormal], runs[queue.PriorityHigh]
	b.ReportMetric(median(nf.total), "normal-s")
	b.ReportMetric(median(hf.total), "high-s")
	b.ReportMetric(median(nf.workers), "normal-run-s")
	b.ReportMetric(median(hf.workers), "high-run-s")
	fmt.Fprintf(os.Stderr, "\nfair service, %d run(s) each, medians: a 10-host noop batch submitted once a %d-host noop batch has results\n"+
		"(1 scheduler, %d workers, one embedded etcd, fsync on; the large batch's submit took %.1f s):\n"+
		"  priority normal: %.2f s submit to summary = %.2f s until the leader began sharding it + %.2f s from then to its last result + the summary (large batch: %.0f hosts done by its last result)\n"+
		"  priority high:   %.2f s submit to summary = %.2f s until the leader began sharding it + %.2f s from then to its last result + the summary (large batch: %.0f hosts done by its last result)\n",
		len(nf.total), n, workers, median(nf.submit),
		median(nf.total), median(nf.leader), median(nf.workers), median(nf.done),
		median(hf.total), median(hf.leader), median(hf.workers), median(hf.done))
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
