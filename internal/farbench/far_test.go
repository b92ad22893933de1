// Package farbench measures workers whose etcd is far away or busy: one
// embedded etcd (fsync on), a scheduler next to it, and workers that reach
// it through a nettest.Proxy adding a fixed one-way delay. Run it with
// `make bench`; it prints its figures side by side.
package farbench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/internal/nettest"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one embedded etcd for a whole benchmark.
type env struct {
	srv *etcdserver.Server
	seq atomic.Int64
}

func newEnv(b *testing.B) *env {
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: b.TempDir(), Log: zerolog.Nop(), CompactionRetention: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return &env{srv: srv}
}

func (e *env) client(b *testing.B, endpoint string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second,
		Logger: logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
	})
	if err != nil {
		b.Fatal(err)
	}
	return cli
}

// setup is what one run was given.
type setup struct {
	hosts, workers, concurrency int
	delay                       time.Duration // one way, workers to etcd
	params                      map[string]string
	requestLimit                int // 0: adaptive
}

// figures are what one run measured.
type figures struct {
	elapsed       time.Duration
	running       []float64 // running checks across the workers, sampled every 50ms
	claims        []time.Duration
	minLimit      int
	limitSamples  []float64 // the request limit summed over workers, sampled
	claimOutcomes map[string]float64
	readyKeys     []int64 // ready keys in etcd, sampled with running
}

// runBatch runs one batch from submit to summary.
func (e *env) runBatch(b *testing.B, s setup) figures {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := fmt.Sprintf("/far-%d", e.seq.Add(1))
	var clients []*clientv3.Client
	var wg sync.WaitGroup
	px, err := nettest.NewProxy(e.srv.Endpoint(), s.delay)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		cancel()
		wg.Wait()
		for _, c := range clients {
			c.Close()
		}
		px.Close()
	}()
	client := func(endpoint string) *clientv3.Client {
		c := e.client(b, endpoint)
		clients = append(clients, c)
		return c
	}
	sch, err := scheduler.New(queue.New(client(e.srv.Endpoint()), prefix), scheduler.Config{ID: "far-scheduler", Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	wg.Go(func() { sch.Run(ctx) })
	var mu sync.Mutex
	var claims []time.Duration
	onClaim := func(d time.Duration, _ int) {
		mu.Lock()
		claims = append(claims, d)
		mu.Unlock()
	}
	reg := prometheus.NewRegistry()
	m := metrics.NewWorker(reg) // shared: gauges are summed over workers
	ws := make([]*worker.Worker, s.workers)
	for i := range ws {
		w, err := worker.New(queue.New(client(px.Addr()), prefix), worker.Config{ID: fmt.Sprint("far-worker-", i),
			Concurrency: s.concurrency, Log: benchLog(), OnClaim: onClaim, Metrics: m, RequestLimit: s.requestLimit})
		if err != nil {
			b.Fatal(err)
		}
		ws[i] = w
		wg.Go(func() { w.Run(ctx) })
	}
	for _, w := range ws {
		<-w.Started()
	}
	hosts := make([]inventory.Host, s.hosts)
	for i := range hosts {
		hosts[i] = inventory.Host{Name: fmt.Sprintf("host-%06d", i), Address: "127.0.0.1"}
	}
	q := queue.New(client(e.srv.Endpoint()), prefix)
	var f figures
	f.minLimit = 8 * s.workers
	sampled := make(chan struct{})
	sctx, stopSampling := context.WithCancel(ctx)
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				f.running = append(f.running, testutil.ToFloat64(m.RunningChecks))
				if resp, err := q.Client().Get(sctx, q.Keys().Ready(), clientv3.WithPrefix(), clientv3.WithCountOnly()); err == nil {
					f.readyKeys = append(f.readyKeys, resp.Count)
				}
				l := testutil.ToFloat64(m.RequestLimit)
				f.limitSamples = append(f.limitSamples, l)
				f.minLimit = min(f.minLimit, int(l))
			}
		}
	}()
	start := time.Now()
	if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "far", Check: "noop", Params: s.params, Hosts: hosts}); err != nil {
		b.Fatal(err)
	}
	waitSummary(b, q, "far")
	f.elapsed = time.Since(start)
	if os.Getenv("FARBENCH_DEBUG") != "" {
		rows, _, _ := q.Results(ctx, "far")
		att := map[string]int{}
		for _, r := range rows {
			att[fmt.Sprintf("%s/%d", r.Status, r.Attempts)]++
			if r.Attempts > 1 && att["shown"] < 3 {
				att["shown"]++
				fmt.Fprintf(os.Stderr, "retried: %+v\n", r)
			}
		}
		fmt.Fprintln(os.Stderr, "results by status/attempts:", att)
	}
	stopSampling()
	<-sampled
	mu.Lock()
	f.claims = claims
	mu.Unlock()
	f.claimOutcomes = map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "patrol_worker_claim_transactions_total" {
			for _, m := range mf.GetMetric() {
				f.claimOutcomes[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return f
}

// benchLog is the workers' log: none, or debug lines on stderr with
// FARBENCH_DEBUG set.
func benchLog() zerolog.Logger {
	if os.Getenv("FARBENCH_DEBUG") == "" {
		return zerolog.Nop()
	}
	zerolog.TimeFieldFormat = "15:04:05.000"
	return zerolog.New(os.Stderr).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

func waitSummary(b *testing.B, q *queue.Queue, batch string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	wch := q.Client().Watch(ctx, q.Keys().BatchSummary(batch), clientv3.WithCreatedNotify())
	<-wch
	for {
		if _, done, err := q.Summary(ctx, batch); err != nil {
			b.Fatal(err)
		} else if done {
			return
		}
		if _, ok := <-wch; !ok {
			b.Fatalf("batch %s did not finish within 10 minutes", batch)
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[len(s)/2]
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// steady is the middle of a run's samples: the first and last fifth are
// the batch starting and draining.
func steady(xs []float64) []float64 {
	n := len(xs)
	if n < 5 {
		return xs
	}
	return xs[n/5 : n-n/5]
}

// BenchmarkFarEtcd prints, for 1,000 noop checks of 1s, the time against
// the ideal (hosts / total concurrency × 1s) with etcd 0, 30 and 100 ms
// away one way: for one worker at --concurrency 64 (ideal 15.6s); for four
// workers sharing the same 64 slots (--concurrency 16 each, the same
// ideal); and for four workers at 64 each (ideal 3.9s, where a batch's
// fixed round trips, from submit to the first claim and from the last
// commit to the summary, weigh four times as much). With them: the checks
// the workers ran at once (their effective concurrency: the median over
// the steady part of the run) and the lowest request limit there (it
// starts at 2 a worker and grows); each figure the median over b.N runs.
func BenchmarkFarEtcd(b *testing.B) {
	e := newEnv(b)
	delays := []time.Duration{0, 30 * time.Millisecond, 100 * time.Millisecond}
	type shape struct{ workers, concurrency int }
	shapes := []shape{{1, 64}, {4, 16}, {4, 64}}
	type key struct {
		delay time.Duration
		shape shape
	}
	ratios := map[key][]float64{}
	running := map[key][]float64{}
	limits := map[key]int{}
	for b.Loop() {
		for _, sh := range shapes {
			for _, d := range delays {
				s := setup{hosts: 1000, workers: sh.workers, concurrency: sh.concurrency, delay: d, params: map[string]string{"sleep": "1s"}}
				f := e.runBatch(b, s)
				ideal := float64(s.hosts) / float64(s.concurrency*s.workers)
				k := key{d, sh}
				ratios[k] = append(ratios[k], f.elapsed.Seconds()/ideal)
				running[k] = append(running[k], median(steady(f.running)))
				if st := steady(f.limitSamples); len(st) > 0 {
					if l, ok := limits[k]; !ok || int(slices.Min(st)) < l {
						limits[k] = int(slices.Min(st))
					}
				}
			}
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nfar etcd: 1000 x noop sleep=1s, medians of %d runs (targets: <= 1.25x ideal at 30ms, <= 1.5x at 100ms)\n", len(ratios[key{0, shapes[0]}]))
	for _, sh := range shapes {
		for _, d := range delays {
			k := key{d, sh}
			fmt.Fprintf(&out, "  %d worker(s) x --concurrency %2d, %3dms one way: %.2fx ideal (per run: %s); checks running at once (steady median) %.0f of %d; request limit (summed) at least %d of %d past the start\n",
				sh.workers, sh.concurrency, d.Milliseconds(), median(ratios[k]), fmtAll(ratios[k]), median(running[k]), sh.concurrency*sh.workers, limits[k], 8*sh.workers)
		}
	}
	fmt.Fprint(os.Stderr, out.String())
	b.ReportMetric(median(ratios[key{100 * time.Millisecond, shapes[0]}]), "x-ideal-100ms")
}

// BenchmarkFarThroughput prints a 20,000-host noop batch through 4 workers
// with etcd 0 and 30 ms away, and the ratio of the two (target >= 0.5).
//
// FARBENCH_HOSTS=N runs it with N hosts instead, to try larger batches.
func BenchmarkFarThroughput(b *testing.B) {
	e := newEnv(b)
	hosts := 20000
	if n, err := strconv.Atoi(os.Getenv("FARBENCH_HOSTS")); err == nil && n > 0 {
		hosts = n
	}
	var near, far, ratio []float64
	for b.Loop() {
		s := setup{hosts: hosts, workers: 4, concurrency: 64}
		f0 := e.runBatch(b, s)
		s.delay = 30 * time.Millisecond
		f30 := e.runBatch(b, s)
		near = append(near, float64(s.hosts)/f0.elapsed.Seconds())
		far = append(far, float64(s.hosts)/f30.elapsed.Seconds())
		ratio = append(ratio, f0.elapsed.Seconds()/f30.elapsed.Seconds())
	}
	fmt.Fprintf(os.Stderr, "\nfar throughput: %d-host noop batch, 4 workers (--concurrency 64), medians of %d runs\n"+
		"  0ms: %.0f tasks/s; 30ms one way: %.0f tasks/s; ratio %.2f (per run: %s; target >= 0.5)\n",
		hosts, len(ratio), median(near), median(far), median(ratio), fmtAll(ratio))
	b.ReportMetric(median(ratio), "ratio-30ms")
}

// BenchmarkSaturatedEtcd measures one worker's claim latency with etcd
// idle (its baseline), then with a competing load generator saturating
// etcd, with the adaptive request limit and with the limit fixed at its
// ceiling; and prints the limit it went down to.
func BenchmarkSaturatedEtcd(b *testing.B) {
	e := newEnv(b)
	s := setup{hosts: 20000, workers: 1, concurrency: 64}
	var base, adaptive, fixed []time.Duration
	minLimit := 8
	var tpAdaptive, tpFixed []float64
	for b.Loop() {
		f := e.runBatch(b, s)
		base = append(base, pct(f.claims, 99))
		stop := e.load(b, 256)
		fa := e.runBatch(b, s)
		s.requestLimit = 8
		ff := e.runBatch(b, s)
		s.requestLimit = 0
		stop()
		adaptive = append(adaptive, pct(fa.claims, 99))
		fixed = append(fixed, pct(ff.claims, 99))
		minLimit = min(minLimit, fa.minLimit)
		tpAdaptive = append(tpAdaptive, float64(s.hosts)/fa.elapsed.Seconds())
		tpFixed = append(tpFixed, float64(s.hosts)/ff.elapsed.Seconds())
	}
	mb, ma, mf := pct(base, 50), pct(adaptive, 50), pct(fixed, 50)
	fmt.Fprintf(os.Stderr, "\nsaturated etcd: 20000-host noop batch, 1 worker, a competing load of 256 writers; medians of %d runs\n"+
		"  claim p99: idle etcd (baseline) %s; saturated, adaptive limit %s (%.1fx baseline); saturated, limit fixed at 8 %s (%.1fx baseline)\n"+
		"  request limit went as low as %d of 8; tasks/s saturated: adaptive %.0f, fixed %.0f\n",
		len(base), mb.Round(100*time.Microsecond), ma.Round(100*time.Microsecond), float64(ma)/float64(mb),
		mf.Round(100*time.Microsecond), float64(mf)/float64(mb), minLimit, median(tpAdaptive), median(tpFixed))
}

// load starts writers putting 1 KiB values as fast as etcd takes them;
// stop ends them and waits.
func (e *env) load(b *testing.B, writers int) (stop func()) {
	cli := e.client(b, e.srv.Endpoint())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	val := strings.Repeat("x", 1024)
	for i := range writers {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				cli.Put(ctx, fmt.Sprintf("/load/%d/%d", i, n%100), val)
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
		cli.Close()
	}
}

func fmtAll(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}
