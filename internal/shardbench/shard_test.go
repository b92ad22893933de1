package shardbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(proctest.Wrap(m)) }

const (
	hosts = 100000
	// Targets the figures are printed against.
	targetShard = 10 * time.Second
	targetRSS   = 256 << 20
)

// BenchmarkShard100k measures, on one embedded etcd with fsync on and one
// `patrol scheduler` child process (no workers):
//
//	(a) the time from submitting a 100,000-host noop batch (queue.Submit:
//	    inventory upload and spec) until every sharding lane is complete,
//	    seen by a watch on the batch's progress counters;
//	(b) the scheduler's peak resident set (VmHWM) once sharding is done.
//
// Each iteration runs a fresh scheduler under a fresh prefix; the figures
// printed are medians. Run it with -benchtime 3x.
func BenchmarkShard100k(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads the scheduler's peak RSS from /proc: Linux only")
	}
	bin := proctest.Binary(b)
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: filepath.Join(b.TempDir(), "etcd"), Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second,
		Logger: logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()

	inv := make([]inventory.Host, hosts)
	for i := range inv {
		inv[i] = inventory.Host{Name: fmt.Sprintf("host-%06d.bench", i), Address: "127.0.0.1"}
	}
	var runs []run
	for i := 0; b.Loop(); i++ {
		runs = append(runs, shardOnce(b, bin, srv.Endpoint(), cli, fmt.Sprintf("/shardbench-%d", i), inv))
	}

	shard := medianDur(runs, func(r run) time.Duration { return r.shard })
	submit := medianDur(runs, func(r run) time.Duration { return r.submit })
	took := medianDur(runs, func(r run) time.Duration { return r.took })
	rss := slices.MaxFunc(runs, func(x, y run) int { return int(x.peakRSS - y.peakRSS) }).peakRSS
	var each []string
	for _, r := range runs {
		each = append(each, fmt.Sprintf("%.2fs/%dMiB", r.shard.Seconds(), r.peakRSS>>20))
	}
	verdict := "within"
	if shard > targetShard || rss >= targetRSS {
		verdict = "OVER"
	}
	fmt.Fprintf(os.Stderr, "\nsharding, %d runs on one embedded etcd (fsync on), 1 scheduler process, no workers:\n"+
		"  shard %d hosts: %.2fs from submit to every lane complete (median of %d; each run %s)\n"+
		"    of which submit (inventory upload + spec): %.2fs; the scheduler's own \"batch sharded\" figure: %.2fs\n"+
		"  scheduler peak RSS (VmHWM): %d MiB (max of %d runs)\n"+
		"  target <= %s and < %d MiB: %s target\n",
		len(runs), hosts, shard.Seconds(), len(runs), strings.Join(each, " "),
		submit.Seconds(), took.Seconds(), rss>>20, len(runs), targetShard, targetRSS>>20, verdict)
	b.ReportMetric(0, "ns/op") // an iteration also starts a process and cleans up: not a figure
	b.ReportMetric(shard.Seconds(), "s-to-shard")
	b.ReportMetric(float64(rss)/(1<<20), "MiB-peak-rss")
	b.ReportMetric(hosts/shard.Seconds(), "hosts/s")
}

// run is one iteration's figures.
type run struct {
	submit  time.Duration // queue.Submit returned
	shard   time.Duration // every lane complete, from submit start
	took    time.Duration // the scheduler's own sharding time, from its log
	peakRSS int64         // bytes
}

// shardOnce starts a scheduler under prefix, submits the batch and waits
// until it is sharded.
func shardOnce(b *testing.B, bin, endpoint string, cli *clientv3.Client, prefix string, inv []inventory.Host) run {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	defer func() {
		// Once the scheduler is gone, leave etcd as the next run found it.
		if _, err := cli.Delete(ctx, queue.NewKeys(prefix).All(), clientv3.WithPrefix()); err != nil {
			b.Error(err)
		}
	}()
	sched := proctest.Start(b, bin, "scheduler", []string{"PATROL_ENDPOINTS=" + endpoint, "PATROL_PREFIX=" + prefix}, "scheduler", "--id", "shardbench")
	defer sched.Stop(b)
	sched.WaitLog(b, 30*time.Second, "leading", nil)

	q := queue.New(cli, prefix)
	const batch = "shard100k"
	progress := watchProgress(ctx, b, cli, q.Keys().BatchProgress(batch))
	start := time.Now()
	if _, _, err := q.Submit(ctx, queue.SubmitRequest{ID: batch, Check: "noop", Hosts: inv}); err != nil {
		b.Fatal(err)
	}
	submitted := time.Since(start)
	if err := progress(hosts); err != nil {
		b.Fatal(err) // the scheduler's cleanup prints its log
	}
	sharded := time.Since(start)
	rss, err := sched.PeakRSS()
	if err != nil {
		b.Fatal(err)
	}
	l := sched.WaitLog(b, 30*time.Second, "batch sharded", nil)
	took, _ := l["took"].(float64) // zerolog writes durations in milliseconds
	return run{submit: submitted, shard: sharded, took: time.Duration(took * float64(time.Millisecond)), peakRSS: rss}
}

// watchProgress starts watching a batch's lane counters and returns a
// function that blocks until they add up to want. The watch starts before
// the batch exists, so no update is missed.
func watchProgress(ctx context.Context, b *testing.B, cli *clientv3.Client, prefix string) func(want int) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	resp, err := cli.Get(wctx, prefix, clientv3.WithPrefix())
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	lanes := map[string]int{}
	for _, kv := range resp.Kvs {
		lanes[string(kv.Key)], _ = strconv.Atoi(string(kv.Value))
	}
	wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	return func(want int) error {
		defer cancel()
		sum := func() int {
			n := 0
			for _, v := range lanes {
				n += v
			}
			return n
		}
		for sum() < want {
			wr, ok := <-wch
			if !ok || wr.Err() != nil {
				return fmt.Errorf("progress watch ended at %d of %d hosts sharded: %v (%v)", sum(), want, wr.Err(), ctx.Err())
			}
			for _, ev := range wr.Events {
				n, err := strconv.Atoi(string(ev.Kv.Value))
				if err != nil {
					return fmt.Errorf("%s: %q is not a count", ev.Kv.Key, ev.Kv.Value)
				}
				lanes[string(ev.Kv.Key)] = n
			}
		}
		if got := sum(); got != want {
			return fmt.Errorf("lanes add up to %d hosts, want %d", got, want)
		}
		return nil
	}
}

func medianDur(runs []run, f func(run) time.Duration) time.Duration {
	ds := make([]time.Duration, len(runs))
	for i, r := range runs {
		ds[i] = f(r)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}
