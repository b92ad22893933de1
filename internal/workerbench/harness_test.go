package workerbench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

// This file is the harness both benchmarks share: the embedded etcd, a
// scheduler and a worker (proctest children), one batch from submit to
// summary, and the /proc CPU figures.

func skipUnlessLinux(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads the children's peak RSS and CPU time from /proc: Linux only")
	}
}

// raiseNofile lifts the test process's soft file-descriptor limit to its
// hard limit and fails b if that is still below need. The children raise
// their own (the Go runtime does it at startup).
func raiseNofile(b *testing.B, need uint64) uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		b.Fatal(err)
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			b.Fatalf("raise RLIMIT_NOFILE to %d: %v", r.Max, err)
		}
	}
	if r.Cur < need {
		b.Fatalf("RLIMIT_NOFILE is %d (hard limit %d); this benchmark needs %d: raise it (ulimit -n) and rerun", r.Cur, r.Max, need)
	}
	return r.Cur
}

// startEtcd starts an embedded etcd with fsync on and a client to it; both
// close when b's cleanups run, after the children's (registered later).
func startEtcd(b *testing.B) (string, *clientv3.Client) {
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: filepath.Join(b.TempDir(), "etcd"), Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second,
		Logger: logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close() })
	return srv.Endpoint(), cli
}

// benchHosts is an inventory of n distinct hosts.
func benchHosts(n int) []inventory.Host {
	inv := make([]inventory.Host, n)
	for i := range inv {
		inv[i] = inventory.Host{Name: fmt.Sprintf("host-%06d.bench", i), Address: "127.0.0.1"}
	}
	return inv
}

// cluster is one iteration's scheduler and worker, under a fresh prefix.
type cluster struct {
	prefix        string
	cli           *clientv3.Client
	sched, worker *proctest.Proc
	stopped       bool
}

// startCluster starts a scheduler and one worker (workerArgs follow
// `worker --id wb-worker`) and waits until the scheduler leads and has
// assigned the zone's shards to the worker.
func startCluster(b *testing.B, bin, endpoint string, cli *clientv3.Client, prefix string, workerArgs ...string) *cluster {
	c := &cluster{prefix: prefix, cli: cli}
	env := []string{"PATROL_ENDPOINTS=" + endpoint, "PATROL_PREFIX=" + prefix}
	c.sched = proctest.Start(b, bin, "scheduler", env, "scheduler", "--id", "wb-scheduler")
	c.worker = proctest.Start(b, bin, "worker", env, append([]string{"worker", "--id", "wb-worker"}, workerArgs...)...)
	c.sched.WaitLog(b, 30*time.Second, "leading", nil)
	c.worker.WaitLog(b, 30*time.Second, "worker started", nil)
	c.sched.WaitLog(b, 30*time.Second, "shards assigned", func(l proctest.LogLine) bool { return l["workers"] == 1.0 })
	return c
}

// stop kills and reaps both processes, then deletes the prefix so that the
// next iteration finds etcd as this one did.
func (c *cluster) stop(b *testing.B) {
	if c.stopped {
		return
	}
	c.stopped = true
	c.worker.Stop(b)
	c.sched.Stop(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.cli.Delete(ctx, queue.NewKeys(c.prefix).All(), clientv3.WithPrefix()); err != nil {
		b.Error(err)
	}
}

// minRequestLimit is the lowest etcd request limit the worker's adaptive
// limiter set (it logs each change), or its ceiling of 8 if it never cut it.
func (c *cluster) minRequestLimit() int {
	low := 8
	for _, l := range c.worker.Logs("etcd request limit changed") {
		if to, ok := l["to"].(float64); ok {
			low = min(low, int(to))
		}
	}
	return low
}

// batchRun is one batch's figures, every duration from the start of submit.
type batchRun struct {
	submit     time.Duration // queue.Submit returned (inventory upload and spec)
	sharded    time.Duration // the sharding lanes add up to every host
	firstClaim time.Duration // the worker's first claim committed
	done       time.Duration // the summary is written
	claims     int           // claim transactions (groups)
	revs       int64         // etcd revisions (transactions) from submit to summary
	summary    queue.Summary
}

// claimEvery is the mean time between claims, in milliseconds, from the
// first claim to the summary: a worker claims one group at a time.
func (r batchRun) claimEvery() float64 {
	return float64(r.done-r.firstClaim) / float64(time.Millisecond) / float64(max(1, r.claims))
}

// runBatch submits req and waits for its summary. No other batch may be
// running. One watch, over the range from the batch's keys to the claims
// (its progress lanes and summary, and every claim key), sees them in
// revision order: when the summary arrives, every claim before it has been
// counted.
func runBatch(ctx context.Context, cli *clientv3.Client, q *queue.Queue, req queue.SubmitRequest) (batchRun, error) {
	keys := q.Keys()
	from, to := keys.Batch(req.ID), clientv3.GetPrefixRangeEnd(keys.Claims())
	var rev0 int64
	for _, p := range []string{keys.Batch(req.ID), keys.Claims()} {
		resp, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return batchRun{}, err
		}
		if resp.Count != 0 {
			return batchRun{}, fmt.Errorf("%d keys already under %s: the batch is not fresh, or another still runs", resp.Count, p)
		}
		rev0 = resp.Header.Revision
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := cli.Watch(wctx, from, clientv3.WithRange(to), clientv3.WithRev(rev0+1), clientv3.WithFilterDelete())

	var r batchRun
	start := time.Now()
	if _, _, err := q.Submit(ctx, req); err != nil {
		return r, err
	}
	r.submit = time.Since(start)
	lanes, progress, summary := map[string]int{}, keys.BatchProgress(req.ID), keys.BatchSummary(req.ID)
	for {
		wr, ok := <-wch
		if !ok || wr.Err() != nil {
			return r, fmt.Errorf("watch ended before the summary (%d claims seen): %v (%v)", r.claims, wr.Err(), ctx.Err())
		}
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			switch {
			case strings.HasPrefix(key, keys.Claims()):
				if ev.Kv.Version == 1 {
					r.claims++
					if r.claims == 1 {
						r.firstClaim = time.Since(start)
					}
				}
			case strings.HasPrefix(key, progress):
				n, err := strconv.Atoi(string(ev.Kv.Value))
				if err != nil {
					return r, fmt.Errorf("%s: %q is not a count", key, ev.Kv.Value)
				}
				lanes[key] = n
				sum := 0
				for _, v := range lanes {
					sum += v
				}
				if sum >= len(req.Hosts) && r.sharded == 0 {
					r.sharded = time.Since(start)
				}
			case key == summary:
				r.done = time.Since(start)
				r.revs = ev.Kv.ModRevision - rev0
				if err := json.Unmarshal(ev.Kv.Value, &r.summary); err != nil {
					return r, fmt.Errorf("summary %s: %v", ev.Kv.Value, err)
				}
				if ok := r.summary.Counts[queue.StatusOK]; ok != len(req.Hosts) {
					return r, fmt.Errorf("%d of %d hosts ok: summary %s", ok, len(req.Hosts), ev.Kv.Value)
				}
				return r, nil
			}
		}
	}
}

// clockTick is the unit of /proc/<pid>/stat's CPU times: USER_HZ, which
// is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU reads a process's CPU time (user+system) and that of its
// reaped children (cutime+cstime): a worker's exec'd checks.
func procCPU(pid int) (self, children time.Duration, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var t [4]int64 // utime stime cutime cstime: fields 14-17
	for j := range t {
		if t[j], err = strconv.ParseInt(f[11+j], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat field %d: %v", pid, 14+j, err)
		}
	}
	return time.Duration(t[0]+t[1]) * clockTick, time.Duration(t[2]+t[3]) * clockTick, nil
}

// selfCPU is the test process's CPU time: the embedded etcd, the watches,
// and whatever else the benchmark runs in-process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childrenCPU is the CPU time of the test process's reaped children (and
// of theirs, once reaped): a finished xargs and its /bin/true runs.
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time every process on the machine has used
// (/proc/stat: all but idle and iowait), to tell how much other load
// shared the machine with a measurement.
func machineBusy() time.Duration {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, iowait, nor guest (counted in user)
			busy += n
		}
	}
	return time.Duration(busy) * clockTick
}

// cpuUse is the CPU each party used over a stretch of wall time.
type cpuUse struct {
	wall, worker, children, sched, self, machine time.Duration
}

// cpuMark starts measuring; the function it returns ends the stretch.
func (c *cluster) cpuMark(b *testing.B) func() cpuUse {
	read := func() cpuUse {
		var u cpuUse
		var err error
		if u.worker, u.children, err = procCPU(c.worker.PID()); err != nil {
			b.Fatal(err)
		}
		if u.sched, _, err = procCPU(c.sched.PID()); err != nil {
			b.Fatal(err)
		}
		u.self = selfCPU()
		u.machine = machineBusy()
		return u
	}
	start, t0 := read(), time.Now()
	return func() cpuUse {
		end := read()
		return cpuUse{wall: time.Since(t0), worker: end.worker - start.worker, children: end.children - start.children,
			sched: end.sched - start.sched, self: end.self - start.self, machine: end.machine - start.machine}
	}
}

// String says where the machine's CPU went.
func (u cpuUse) String() string {
	avail := time.Duration(runtime.NumCPU()) * u.wall
	used := u.worker + u.children + u.sched + u.self
	return fmt.Sprintf("%.2f of %.2f CPU-s (%d cores x %.2fs, %.0f%%): worker %.2f, its exec'd checks %.2f, scheduler %.2f, test process (etcd etc.) %.2f; other processes on the machine %.2f",
		used.Seconds(), avail.Seconds(), runtime.NumCPU(), u.wall.Seconds(), 100*used.Seconds()/avail.Seconds(),
		u.worker.Seconds(), u.children.Seconds(), u.sched.Seconds(), u.self.Seconds(), max(0, u.machine-used).Seconds())
}

// median of f over runs.
func median[T any](runs []T, f func(T) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// medianRun is the run whose f is the median, for its detailed figures.
func medianRun[T any](runs []T, f func(T) float64) T {
	s := slices.Clone(runs)
	slices.SortFunc(s, func(x, y T) int {
		switch a, b := f(x), f(y); {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}
