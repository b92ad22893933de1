package throughput

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	newClient := startEtcd(b, etcdserver.Config{})
	cli := newClient()
	defer cli.Close()

	var casRates, taskRates, ratios, revsPerTask, writesPerTask []float64
	var claims []time.Duration
	for i := 0; b.Loop(); i++ {
		cas := measureCAS(b, cli, fmt.Sprintf("/bench-cas-%d/", i))
		m := measureBatch(b, newClient, fmt.Sprintf("/bench-%d", i))
		casRates = append(casRates, cas)
		taskRates = append(taskRates, m.tasksPerSec)
		ratios = append(ratios, m.tasksPerSec/cas)
		revsPerTask = append(revsPerTask, m.revsPerTask)
		writesPerTask = append(writesPerTask, m.writesPerTask)
		claims = append(claims, m.claims...)
	}
	cas, tasks, ratio := median(casRates), median(taskRates), median(ratios)
	slices.Sort(claims)
	p50, p99 := claims[len(claims)/2], claims[len(claims)*99/100]
	b.ReportMetric(cas, "cas-txn/s")
	b.ReportMetric(tasks, "tasks/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(median(writesPerTask), "key-writes/task")
	fmt.Fprintf(os.Stderr, "\nthroughput, %d runs on one embedded etcd (fsync on), medians:\n"+
		"  (a) compare-and-put from %d clients: %.0f txn/s\n"+
		"  (b) %d-host noop batch, 1 scheduler + %d workers, submit to last result: %.0f tasks/s\n"+
		"  ratio (b)/(a): %.2f (per run: %s)\n"+
		"  claim transaction latency: p50 %s, p99 %s (%d claims)\n"+
		"  etcd key writes per task: %.2f (puts+deletes counted by etcd); transactions (revisions) per task: %.3f\n",
		len(casRates), casClients, cas, batchHosts, workers, tasks, ratio, fmtAll(ratios), p50.Round(10*time.Microsecond),
		p99.Round(10*time.Microsecond), len(claims), median(writesPerTask), median(revsPerTask))
}

// startEtcd starts one embedded etcd (fsync on) in a temporary directory
// for the whole benchmark, and returns how to open a client of it.
func startEtcd(b *testing.B, cfg etcdserver.Config) (newClient func() *clientv3.Client) {
	cfg.DataDir, cfg.Log = b.TempDir(), zerolog.Nop()
	srv, err := etcdserver.Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return func() *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second,
			Logger: logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
		})
		if err != nil {
			b.Fatal(err)
		}
		return cli
	}
}

func fmtAll(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
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

type batchFigures struct {
	tasksPerSec, revsPerTask, writesPerTask float64
	claims                                  []time.Duration
}

// measureBatch runs one batch end to end.
func measureBatch(b *testing.B, newClient func() *clientv3.Client, prefix string) batchFigures {
	var mu sync.Mutex
	var claims []time.Duration
	onClaim := func(d time.Duration, _ int) {
		mu.Lock()
		claims = append(claims, d)
		mu.Unlock()
	}
	ctx, q, stop := startCluster(b, newClient, prefix, onClaim)
	defer stop()
	hosts := make([]inventory.Host, batchHosts)
	for i := range hosts {
		hosts[i] = inventory.Host{Name: fmt.Sprintf("host-%05d", i), Address: "127.0.0.1"}
	}
	rev0, writes0 := revision(b, q.Client()), keyWrites(b)
	start := time.Now()
	if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "bench", Check: "noop", Hosts: hosts}); err != nil {
		b.Fatal(err)
	}
	waitSummary(b, q, "bench")
	elapsed := time.Since(start)
	revs, writes := revision(b, q.Client())-rev0, keyWrites(b)-writes0
	mu.Lock()
	defer mu.Unlock()
	return batchFigures{
		tasksPerSec:   float64(batchHosts) / elapsed.Seconds(),
		revsPerTask:   float64(revs) / batchHosts,
		writesPerTask: writes / batchHosts,
		claims:        claims,
	}
}

// startCluster runs one scheduler and `workers` workers on prefix, each
// with a client of its own, until stop; q is a queue on a client of its
// own for the benchmark, and ctx ends with stop.
func startCluster(b *testing.B, newClient func() *clientv3.Client, prefix string, onClaim func(time.Duration, int)) (ctx context.Context, q *queue.Queue, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var clients []*clientv3.Client
	stop = func() {
		cancel()
		wg.Wait()
		for _, c := range clients {
			c.Close()
		}
	}
	client := func() *clientv3.Client {
		c := newClient()
		clients = append(clients, c)
		return c
	}
	s, err := scheduler.New(queue.New(client(), prefix), scheduler.Config{ID: "bench-scheduler", Log: zerolog.Nop()})
	if err != nil {
		stop()
		b.Fatal(err)
	}
	wg.Go(func() { s.Run(ctx) })
	for i := range workers {
		w, err := worker.New(queue.New(client(), prefix), worker.Config{ID: fmt.Sprint("bench-worker-", i), Log: zerolog.Nop(), OnClaim: onClaim})
		if err != nil {
			stop()
			b.Fatal(err)
		}
		wg.Go(func() { w.Run(ctx) })
	}
	return ctx, queue.New(client(), prefix), stop
}

// keyWrites reads etcd's own count of key puts and deletes, which the
// embedded member registers with the default Prometheus registry.
func keyWrites(b *testing.B) float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var n float64
	found := 0
	for _, mf := range mfs {
		switch mf.GetName() {
		case "etcd_mvcc_put_total", "etcd_mvcc_delete_total":
			found++
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	if found != 2 {
		b.Fatalf("etcd's put and delete counters are not registered (found %d of 2)", found)
	}
	return n
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
