//go:build linux

// Package scalebench measures Patrol on large batches: hosts per second
// for noop batches of 100,000, 300,000 and 1,000,000 hosts through one
// scheduler and 4 workers (processes of the patrol binary) on one etcd
// with the default 2 GiB quota, the scheduler's peak memory, etcd's
// database size at its peak and after retention, and what `patrol results
// -o json` of the largest batch costs; and (BenchmarkIdleLeader) the etcd
// requests an idle leader issues with one pending batch. `make bench` runs
// them; they print their figures and assert none of them.
//
// SCALEBENCH_HOSTS (e.g. 100000,1000000) and IDLEBENCH_HOSTS choose the
// sizes; with -benchtime Nx BenchmarkScale runs each size N times and
// judges the targets on the medians; SCALEBENCH_PROFILES=dir saves the
// scheduler's heap profile every 10 s.
package scalebench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(proctest.Wrap(m)) }

const (
	workers     = 4
	concurrency = 64
	prefix      = "/scale"
	// compaction is etcd's auto-compaction retention in the benchmark: a
	// queue's history must be compacted while a batch runs, or a million
	// hosts' worth of revisions outgrows the quota.
	compaction = 2 * time.Minute
	// retention is the scheduler's: long enough for `patrol results` to
	// read the batch before it is purged, short enough to see the purge.
	retention = 90 * time.Second
)

// sizes are the batch sizes measured, from SCALEBENCH_HOSTS (comma
// separated) or 100,000, 300,000 and 1,000,000.
func sizes(b *testing.B) []int {
	v := os.Getenv("SCALEBENCH_HOSTS")
	if v == "" {
		return []int{100000, 300000, 1000000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("SCALEBENCH_HOSTS %q: want sizes such as 100000,300000", v)
		}
		out = append(out, n)
	}
	return out
}

// run is what one batch size measured.
type run struct {
	hosts                 int
	submit, total         time.Duration // submit command; submit start to summary
	sharding              time.Duration // the leader's sharding, as it logged it
	rate                  float64       // hosts per second, submit start to summary
	schedRSS              int64         // scheduler peak RSS
	dbPeak, dbPeakInUse   int64         // etcd database size (and in use) at its peak
	dbAfter, dbAfterInUse int64         // after the batch was purged by retention
	resultsRSS            int64         // `patrol results -o json` peak RSS
	resultsTook           time.Duration
	resultsBytes          int64
}

// BenchmarkScale runs each size on a fresh etcd, once per iteration
// (-benchtime Nx), and prints every run, then the targets from
// the medians (the rates and times) and the largest figures (memory).
func BenchmarkScale(b *testing.B) {
	bin := proctest.Binary(b)
	ns := sizes(b)
	var all [][]run // per iteration, a run per size
	for b.Loop() {
		var runs []run
		for _, n := range ns {
			runs = append(runs, measure(b, bin, n))
		}
		all = append(all, runs)
	}
	fmt.Fprintf(os.Stderr, "\nscale: noop batches, 1 scheduler + %d workers (--concurrency %d), one embedded etcd (fsync on, 2 GiB quota, auto-compaction every %s)\n",
		workers, concurrency, compaction)
	fmt.Fprintf(os.Stderr, "%-4s %-10s %-9s %-9s %-9s %-9s %-11s %-12s %-22s %-22s %s\n", "RUN", "HOSTS", "SUBMIT", "SHARDING", "TOTAL", "HOSTS/S", "VS FIRST", "SCHED RSS", "ETCD DB PEAK (IN USE)", "AFTER RETENTION", "RESULTS -o json")
	for i, runs := range all {
		for _, r := range runs {
			fmt.Fprintf(os.Stderr, "%-4d %-10d %-9s %-9s %-9s %-9.0f %-11s %-12s %-22s %-22s %s, %s in %s, peak RSS %s\n",
				i+1, r.hosts, r.submit.Round(100*time.Millisecond), r.sharding.Round(100*time.Millisecond), r.total.Round(100*time.Millisecond), r.rate, fmt.Sprintf("%.2fx", r.rate/runs[0].rate),
				mib(r.schedRSS), mib(r.dbPeak)+" ("+mib(r.dbPeakInUse)+")", mib(r.dbAfter)+" ("+mib(r.dbAfterInUse)+")",
				"rows streamed", mib(r.resultsBytes), r.resultsTook.Round(100*time.Millisecond), mib(r.resultsRSS))
		}
	}
	// Per size, across the runs: the median rate and time, the largest
	// memory.
	var rates []float64
	var lastTotal time.Duration
	var lastRSS, lastResults int64
	for j, n := range ns {
		var rs []float64
		var ts []time.Duration
		for _, runs := range all {
			rs, ts = append(rs, runs[j].rate), append(ts, runs[j].total)
			if j == len(ns)-1 {
				lastRSS, lastResults = max(lastRSS, runs[j].schedRSS), max(lastResults, runs[j].resultsRSS)
			}
		}
		rates = append(rates, median(rs))
		lastTotal = median(ts)
		b.ReportMetric(rates[j], fmt.Sprintf("hosts/s@%d", n))
	}
	last := len(ns) - 1
	fmt.Fprintf(os.Stderr, "targets (medians of %d run(s); memory: the largest): %d-host rate >= 0.8x the %d-host rate: %.0f / %.0f hosts/s = %.2fx; %d hosts within 5 min: %s; scheduler RSS <= 512 MiB: %s; results <= 100 MiB: %s\n",
		len(all), ns[last], ns[0], rates[last], rates[0], rates[last]/rates[0], ns[last], lastTotal.Round(time.Second), mib(lastRSS), mib(lastResults))
}

// median is the middle value of xs (the mean of the middle two).
func median[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// measure runs one batch of n noop hosts on a fresh etcd and processes.
func measure(b *testing.B, bin string, n int) run {
	dir := b.TempDir()
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: filepath.Join(dir, "etcd"), CompactionRetention: compaction, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second,
		Logger: logging.Zap(zerolog.Nop(), zapcore.ErrorLevel)})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	env := []string{"PATROL_ENDPOINTS=" + srv.Endpoint(), "PATROL_PREFIX=" + prefix, "PATROL_METRICS_ADDR="}

	schedEnv := env
	profiles := os.Getenv("SCALEBENCH_PROFILES")
	if profiles != "" {
		schedEnv = append(slices.Clone(env), "PATROL_METRICS_ADDR=127.0.0.1:0", "PATROL_PPROF=1")
	}
	sched := proctest.Start(b, bin, "scheduler", schedEnv, "scheduler", "--id", "s1", "--retention", retention.String())
	defer sched.Stop(b)
	if profiles != "" {
		stop := saveHeapProfiles(b, sched.MetricsAddr(b), filepath.Join(profiles, fmt.Sprintf("scheduler-heap-%d", n)))
		defer stop()
	}
	for i := range workers {
		id := fmt.Sprintf("w%d", i+1)
		w := proctest.Start(b, bin, id, env, "worker", "--id", id, "--concurrency", strconv.Itoa(concurrency))
		defer w.Stop(b)
	}

	inv := filepath.Join(dir, "hosts.txt")
	writeInventory(b, inv, n)
	batch := fmt.Sprintf("scale-%d", n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var peak, peakInUse int64
	stopPoll := pollDB(ctx, cli, srv.Endpoint(), &peak, &peakInUse)

	start := time.Now()
	sub := exec.CommandContext(ctx, bin, "submit", "-i", inv, "--check", "noop", "--batch-id", batch)
	sub.Env = append(os.Environ(), env...)
	if out, err := sub.CombinedOutput(); err != nil {
		b.Fatalf("submit: %v\n%s", err, out)
	}
	r := run{hosts: n, submit: time.Since(start)}
	q := queue.New(cli, prefix)
	awaitSummary(b, ctx, cli, q.Keys().BatchSummary(batch))
	r.total = time.Since(start)
	r.rate = float64(n) / r.total.Seconds()
	if ms, ok := sched.WaitLog(b, time.Minute, "batch sharded", nil)["took"].(float64); ok {
		r.sharding = time.Duration(ms * float64(time.Millisecond))
	}
	if r.schedRSS, err = sched.PeakRSS(); err != nil {
		b.Fatal(err)
	}

	// Every row, streamed to a file, as an operator would save them.
	out := filepath.Join(dir, "results.json")
	f, err := os.Create(out)
	if err != nil {
		b.Fatal(err)
	}
	res := exec.CommandContext(ctx, bin, "results", batch, "-o", "json")
	res.Env, res.Stdout = append(os.Environ(), env...), f
	var stderr strings.Builder
	res.Stderr = &stderr
	t0 := time.Now()
	if err := res.Start(); err != nil {
		b.Fatal(err)
	}
	// The peak as /proc reads it while the command runs (VmHWM only
	// grows): wait4's figure for a child of this process would be this
	// process's own, which the embedded etcd makes large.
	exited := make(chan error, 1)
	go func() { exited <- res.Wait() }()
	tick := time.NewTicker(20 * time.Millisecond)
	for waiting := true; waiting; {
		if hwm, err := proctest.PeakRSSOf(res.Process.Pid); err == nil {
			r.resultsRSS = max(r.resultsRSS, hwm)
		}
		select {
		case err := <-exited:
			if err != nil {
				b.Fatalf("results: %v\n%s", err, stderr.String())
			}
			waiting = false
		case <-tick.C:
		}
	}
	tick.Stop()
	r.resultsTook = time.Since(t0)
	f.Close()
	if st, err := os.Stat(out); err == nil {
		r.resultsBytes = st.Size()
	}
	if rows := countLines(b, out, `"host":`); rows != n {
		b.Fatalf("results -o json wrote %d rows, want %d", rows, n)
	}

	// Retention purges the batch within the retention duty's minute
	// after it is due; then etcd's history is compacted and the space it held is
	// free for the next batch (the file shrinks only with a defrag).
	awaitGone(b, ctx, cli, q.Keys().Batch(batch))
	stopPoll()
	st, err := cli.Status(ctx, srv.Endpoint())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cli.Compact(ctx, st.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		b.Fatal(err)
	}
	if st, err = cli.Status(ctx, srv.Endpoint()); err != nil {
		b.Fatal(err)
	}
	r.dbPeak, r.dbPeakInUse = peak, peakInUse
	r.dbAfter, r.dbAfterInUse = st.DbSize, st.DbSizeInUse
	return r
}

// saveHeapProfiles saves the scheduler's heap profile every 10 s, as
// base-<seconds>.pb.gz, until the returned function is called: with
// SCALEBENCH_PROFILES=dir, to see what the scheduler's memory holds.
func saveHeapProfiles(b *testing.B, addr, base string) (stop func()) {
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		b.Fatal(err)
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(stopped)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			resp, err := http.Get("http://" + addr + "/debug/pprof/heap")
			if err != nil {
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				os.WriteFile(fmt.Sprintf("%s-%03.0f.pb.gz", base, time.Since(start).Seconds()), body, 0o644)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func writeInventory(b *testing.B, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(w, "host-%07d.example\n", i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// pollDB records etcd's largest database size, every second, until the
// returned function is called.
func pollDB(ctx context.Context, cli *clientv3.Client, ep string, peak, peakInUse *int64) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if st, err := cli.Status(ctx, ep); err == nil {
				*peak, *peakInUse = max(*peak, st.DbSize), max(*peakInUse, st.DbSizeInUse)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// awaitSummary waits, on a watch, for the batch's summary key.
func awaitSummary(b *testing.B, ctx context.Context, cli *clientv3.Client, key string) {
	awaitKeys(b, ctx, cli, key, func(n int64) bool { return n > 0 }, "the batch's summary")
}

// awaitGone waits, on a watch, until nothing is left under prefix.
func awaitGone(b *testing.B, ctx context.Context, cli *clientv3.Client, prefix string) {
	awaitKeys(b, ctx, cli, prefix, func(n int64) bool { return n == 0 }, "retention to purge the batch")
}

func awaitKeys(b *testing.B, ctx context.Context, cli *clientv3.Client, prefix string, cond func(int64) bool, what string) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch // the watch is in place: no change after the first count is missed
	for {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			b.Fatalf("waiting for %s: %v", what, err)
		}
		if cond(resp.Count) {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-wch:
		}
	}
}

func countLines(b *testing.B, path, substr string) int {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			n++
		}
	}
	return n
}
