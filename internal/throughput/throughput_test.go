package throughput

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	casClients  = 64
	casDuration = 3 * time.Second
	batchHosts  = 20000
	workers     = 4
)

// BenchmarkThroughput measures, on one embedded etcd with fsync on:
//
//	(a) compare-and-put transactions per second from 64 concurrent clients;
//	(b) a 20,000-host noop batch through one scheduler and 4 workers, from
//	    submit to the last result;
//
// and prints tasks/s, the ratio (b)/(a), and etcd revisions per task.
func BenchmarkThroughput(b *testing.B) {
	dir := b.TempDir()
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: dir, Log: zerolog.Nop()})
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
	cli := newClient()
	defer cli.Close()

	var casRates, taskRates, revsPerTask []float64
	for i := 0; b.Loop(); i++ {
		casRates = append(casRates, measureCAS(b, cli, fmt.Sprintf("/bench-cas-%d/", i)))
		rate, revs := measureBatch(b, newClient, fmt.Sprintf("/bench-%d", i))
		taskRates = append(taskRates, rate)
		revsPerTask = append(revsPerTask, revs)
	}
	cas, tasks, revs := median(casRates), median(taskRates), median(revsPerTask)
	b.ReportMetric(cas, "cas-txn/s")
	b.ReportMetric(tasks, "tasks/s")
	b.ReportMetric(tasks/cas, "ratio")
	b.ReportMetric(revs, "revisions/task")
	fmt.Fprintf(os.Stderr, "\nthroughput (median of %d runs, fsync on): (a) %d CAS txn/s from %d clients; (b) %d-host noop batch: %.0f tasks/s; ratio (b)/(a) = %.2f; %.2f etcd revisions per task\n",
		len(casRates), int(cas), casClients, batchHosts, tasks, tasks/cas, revs)
}

// measureCAS runs compare-and-put transactions from casClients goroutines
// for casDuration and returns transactions per second.
func measureCAS(b *testing.B, cli *clientv3.Client, prefix string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), casDuration)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	for c := range casClients {
		wg.Go(func() {
			key := fmt.Sprintf("%s%03d", prefix, c)
			var rev int64
			for ctx.Err() == nil {
				resp, err := cli.Txn(ctx).
					If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
					Then(clientv3.OpPut(key, "v")).
					Else(clientv3.OpGet(key)).Commit()
				if err != nil {
					return
				}
				if resp.Succeeded {
					rev = resp.Header.Revision
				}
				n.Add(1)
			}
		})
	}
	start := time.Now()
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// measureBatch runs one batch end to end and returns tasks/s and etcd
// revisions per task.
func measureBatch(b *testing.B, newClient func() *clientv3.Client, prefix string) (float64, float64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var clients []*clientv3.Client
	defer func() {
		cancel()
		wg.Wait()
		for _, c := range clients {
			c.Close()
		}
	}()
	client := func() *clientv3.Client {
		c := newClient()
		clients = append(clients, c)
		return c
	}
	s, err := scheduler.New(queue.New(client(), prefix), scheduler.Config{ID: "bench-scheduler", Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	wg.Go(func() { s.Run(ctx) })
	for i := range workers {
		w, err := worker.New(queue.New(client(), prefix), worker.Config{ID: fmt.Sprint("bench-worker-", i), Log: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { w.Run(ctx) })
	}
	hosts := make([]inventory.Host, batchHosts)
	for i := range hosts {
		hosts[i] = inventory.Host{Name: fmt.Sprintf("host-%05d", i), Address: "127.0.0.1"}
	}
	q := queue.New(client(), prefix)
	rev0 := revision(b, q.Client())
	start := time.Now()
	if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "bench", Check: "noop", Hosts: hosts}); err != nil {
		b.Fatal(err)
	}
	waitSummary(b, q, "bench")
	elapsed := time.Since(start)
	revs := revision(b, q.Client()) - rev0
	return float64(batchHosts) / elapsed.Seconds(), float64(revs) / batchHosts
}

func waitSummary(b *testing.B, q *queue.Queue, batch string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	key := q.Keys().BatchSummary(batch)
	wch := q.Client().Watch(ctx, key, clientv3.WithCreatedNotify())
	<-wch
	for {
		if _, done, err := q.Summary(ctx, batch); err != nil {
			b.Fatal(err)
		} else if done {
			return
		}
		if _, ok := <-wch; !ok {
			b.Fatalf("batch %s did not finish within 5 minutes", batch)
		}
	}
}

func revision(b *testing.B, cli *clientv3.Client) int64 {
	resp, err := cli.Get(context.Background(), "rev-probe")
	if err != nil {
		b.Fatal(err)
	}
	return resp.Header.Revision
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
