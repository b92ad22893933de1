package worker_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/internal/nettest"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

type fixture struct {
	env *etcdtest.Env
	q   *queue.Queue
	ctx context.Context
}

func setup(t *testing.T) *fixture {
	t.Helper()
	env := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	f := &fixture{env: env, q: queue.New(env.Client, env.Prefix), ctx: ctx}
	s, err := scheduler.New(queue.New(etcdtest.NewClient(t), env.Prefix), scheduler.Config{ID: "s", SessionTTL: 10 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	f.goUntilCleanup(t, s.Run)
	return f
}

// goUntilCleanup runs fn until the test ends and returns a stop function.
func (f *fixture) goUntilCleanup(t *testing.T, fn func(context.Context) error) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { fn(ctx) })
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// worker starts a worker whose drain gives up at once: tests that want a
// drain use workerWith.
func (f *fixture) worker(t *testing.T, id string, concurrency int) (*worker.Worker, func()) {
	return f.workerWith(t, worker.Config{ID: id, Concurrency: concurrency, DrainTimeout: time.Nanosecond})
}

func (f *fixture) workerWith(t *testing.T, cfg worker.Config) (*worker.Worker, func()) {
	t.Helper()
	cfg.LeaseTTL, cfg.Log = 10*time.Second, zerolog.Nop()
	w, err := worker.New(queue.New(etcdtest.NewClient(t), f.env.Prefix), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w, f.goUntilCleanup(t, w.Run)
}

func (f *fixture) submit(t *testing.T, id, check string, params map[string]string, hosts []inventory.Host) {
	t.Helper()
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: id, Check: check, Params: params, Hosts: hosts}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) waitDone(t *testing.T, batch string) []queue.HostResult {
	t.Helper()
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().BatchSummary(batch), 45*time.Second, "batch "+batch+" to finish", func(n int) bool { return n == 1 })
	rows, bad, err := f.q.Results(f.ctx, batch)
	if err != nil || len(bad) > 0 {
		t.Fatalf("results: %v %v", err, bad)
	}
	return rows
}

func names(n int) []inventory.Host {
	out := make([]inventory.Host, n)
	for i := range out {
		out[i] = inventory.Host{Name: fmt.Sprintf("h%03d", i), Address: "127.0.0.1"}
	}
	return out
}

func TestWorkersRunEveryTaskOnceWithTheRightVerdict(t *testing.T) {
	f := setup(t)
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	openPort := open.Addr().(*net.TCPAddr).Port
	var hosts []inventory.Host
	for i := range 40 {
		port := openPort
		if i%4 == 0 {
			port = closedPort
		}
		hosts = append(hosts, inventory.Host{Name: fmt.Sprintf("h%02d", i), Address: "127.0.0.1", Port: port})
	}
	// The two workers share their metrics, as in `patrol dev`.
	reg := prometheus.NewPedanticRegistry()
	m := metrics.NewWorker(reg)
	w1, stop1 := f.workerWith(t, worker.Config{ID: "w1", Concurrency: 8, DrainTimeout: time.Nanosecond, Metrics: m})
	w2, stop2 := f.workerWith(t, worker.Config{ID: "w2", Concurrency: 8, DrainTimeout: time.Nanosecond, Metrics: m})
	f.submit(t, "tcp", "tcp", map[string]string{"timeout": "5s"}, hosts)
	rows := f.waitDone(t, "tcp")
	if len(rows) != 40 {
		t.Fatalf("%d rows, want 40", len(rows))
	}
	for i, r := range rows {
		want := queue.StatusOK
		if i%4 == 0 {
			want = queue.StatusFail
		}
		if r.Host != hosts[i].Name || r.Status != want || r.Attempts != 1 || (r.Worker != "w1" && r.Worker != "w2") {
			t.Errorf("row %d = %+v, want %s on %s", i, r, want, hosts[i].Name)
		}
	}
	s1, s2 := w1.Stats(), w2.Stats()
	if s1.Committed+s2.Committed != 40 || s1.Rejected+s2.Rejected != 0 {
		t.Fatalf("stats %+v %+v", s1, s2)
	}

	stop1()
	stop2()
	want := `
# HELP patrol_worker_results_committed_total Results committed, by status and check type.
# TYPE patrol_worker_results_committed_total counter
patrol_worker_results_committed_total{check="tcp",status="fail"} 10
patrol_worker_results_committed_total{check="tcp",status="ok"} 30
# HELP patrol_worker_tasks_claimed_total Tasks claimed.
# TYPE patrol_worker_tasks_claimed_total counter
patrol_worker_tasks_claimed_total 40
# HELP patrol_worker_zombie_completions_rejected_total Completions refused because the claim was no longer this worker's (lease expired or claim revoked); the committed result is untouched.
# TYPE patrol_worker_zombie_completions_rejected_total counter
patrol_worker_zombie_completions_rejected_total 0
# HELP patrol_worker_running_checks Checks running now.
# TYPE patrol_worker_running_checks gauge
patrol_worker_running_checks 0
# HELP patrol_worker_capacity How many checks the worker may run at once (--concurrency).
# TYPE patrol_worker_capacity gauge
patrol_worker_capacity 16
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "patrol_worker_results_committed_total", "patrol_worker_tasks_claimed_total",
		"patrol_worker_zombie_completions_rejected_total", "patrol_worker_running_checks", "patrol_worker_capacity"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "patrol_worker_check_duration_seconds"); err != nil || n != 2 {
		t.Errorf("check duration series = %d (%v), want 2: tcp ok and tcp fail", n, err)
	}
}

func TestUnknownCheckIsAnErrorResultNotACrash(t *testing.T) {
	f := setup(t)
	f.worker(t, "w", 4)
	// A batch written by a newer submitter with a check this worker lacks:
	// an error each attempt, then dead.
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b", Check: "ping", Hosts: names(3),
		Policy: queue.Policy{MaxAttempts: 2, BackoffMS: 1, MaxBackoffMS: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.waitDone(t, "b") {
		if r.Status != queue.StatusDead || r.Attempts != 2 || len(r.History) != 1 || !strings.Contains(r.Message, `unknown type "ping"`) {
			t.Fatalf("row %+v, want dead after 2 attempts naming the check", r)
		}
	}
}

func TestLostLeaseCancelsRunningChecksAndAnotherWorkerFinishes(t *testing.T) {
	f := setup(t)
	// An HTTP target that holds every request until the gate opens.
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	w1, stop1 := f.worker(t, "w1", 8)
	f.submit(t, "b", "http", map[string]string{"url": srv.URL, "timeout": "1m"}, names(5))
	claims := f.q.Keys().Claims()
	etcdtest.WaitFor(t, f.env.Client, claims, 30*time.Second, "w1 to claim all 5 as one group", func(n int) bool { return n == 1 })

	// w1's lease is revoked, as when etcd expires it: its claims vanish,
	// the scheduler requeues, and its checks are cancelled uncommitted.
	resp, err := f.env.Client.Get(f.ctx, claims, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Client.Revoke(f.ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	stop1()
	if s := w1.Stats(); s.Committed != 0 {
		t.Fatalf("w1 committed after losing its lease: %+v", s)
	}

	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Ready(), 30*time.Second, "5 requeued tasks", func(n int) bool { return n == 5 })

	close(gate)
	f.worker(t, "w2", 8)
	for _, r := range f.waitDone(t, "b") {
		// Attempt 2 at least: if w1 reopened a session and claimed again
		// before it stopped, it released those claims, adding an attempt.
		if r.Status != queue.StatusOK || r.Worker != "w2" || r.Attempts < 2 {
			t.Fatalf("row %+v, want ok by w2 on attempt 2 or later", r)
		}
	}
}

func TestStopReleasesClaimsForImmediateRequeue(t *testing.T) {
	f := setup(t)
	w, stop := f.worker(t, "w", 8)
	f.submit(t, "b", "noop", map[string]string{"sleep": "1h"}, names(6))
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Claims(), 30*time.Second, "a claim on all 6", func(n int) bool { return n == 1 })
	stop()
	if s := w.Stats(); s.Released != 1 || s.Claimed != 6 {
		t.Fatalf("stats %+v, want 6 claimed in 1 group, released", s)
	}
	// Requeued by the scheduler's claim watch, long before a 10s lease TTL
	// would matter. The worker gave the tasks back rather than lost them,
	// so the same attempt runs again, with no lost attempt in its history.
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Ready(), 30*time.Second, "6 requeued tasks", func(n int) bool { return n == 6 })
	ready, _, err := f.q.ListReady(f.ctx, queue.DefaultZone, queue.Assignment{}.ShardOrder("", 0), 10)
	if err != nil || len(ready) != 6 {
		t.Fatalf("ready %+v err %v", ready, err)
	}
	for _, r := range ready {
		if r.Task.Attempt != 1 || len(r.Task.History) != 0 {
			t.Fatalf("released task %+v, want attempt 1 again with no history", r.Task)
		}
	}
}

func TestTasksRunOnlyInTheirHostsZone(t *testing.T) {
	f := setup(t)
	for _, id := range []string{"dc1-a", "dc1-b", "dc2-a"} {
		w, err := worker.New(queue.New(etcdtest.NewClient(t), f.env.Prefix), worker.Config{
			ID: id, Zone: id[:3], Concurrency: 4, LeaseTTL: 10 * time.Second, Log: zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		f.goUntilCleanup(t, w.Run)
	}
	var hosts []inventory.Host
	for i := range 30 {
		zone := []string{"dc1", "dc2"}[i%2]
		hosts = append(hosts, inventory.Host{Name: fmt.Sprintf("h%02d", i), Address: "127.0.0.1", Vars: map[string]string{"zone": zone}})
	}
	f.submit(t, "zoned", "noop", nil, hosts)
	rows := f.waitDone(t, "zoned")
	if len(rows) != 30 {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows {
		zone := hosts[i].Vars["zone"]
		if r.Status != queue.StatusOK || !strings.HasPrefix(r.Worker, zone+"-") {
			t.Fatalf("host %s in %s ran on %q (%s)", r.Host, zone, r.Worker, r.Status)
		}
	}
}

func TestAZoneWithNoWorkerWaits(t *testing.T) {
	f := setup(t)
	f.worker(t, "w", 4) // zone "default" only
	hosts := []inventory.Host{
		{Name: "here", Address: "127.0.0.1"},
		{Name: "there", Address: "127.0.0.1", Vars: map[string]string{"zone": "dc9"}},
	}
	f.submit(t, "b", "noop", nil, hosts)
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().BatchResults("b"), 30*time.Second, "the default-zone host's result", func(n int) bool { return n == 1 })
	zones, err := f.q.ZoneStatus(f.ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if z := zones["dc9"]; z.Pending != 1 || z.Workers != 0 {
		t.Fatalf("dc9: %+v, want 1 pending and no workers", z)
	}
	if z := zones["default"]; z.Pending != 0 || z.Workers != 1 {
		t.Fatalf("default: %+v, want nothing pending and 1 worker", z)
	}
}

func TestParallelCapsTasksInFlightAcrossWorkers(t *testing.T) {
	f := setup(t)
	// Every check holds until the test has seen how many run at once.
	url, release, peak := holdingTarget(t)
	f.worker(t, "w1", 16)
	f.worker(t, "w2", 16)
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "capped", Check: "http", Params: map[string]string{"url": url},
		Hosts: names(20), Policy: queue.Policy{Parallel: 3}}); err != nil {
		t.Fatal(err)
	}
	// Three checks start; no more may, however long the test waits for the
	// leader to release tasks: the claim keys stay below the cap.
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Held(), 30*time.Second, "17 held tasks", func(n int) bool { return n == 17 })
	release()
	rows := f.waitDone(t, "capped")
	if p := peak(); len(rows) != 20 || p > 3 || p == 0 {
		t.Fatalf("%d rows, peak %d checks at once, want at most 3", len(rows), p)
	}
}

// holdingTarget is an HTTP target whose requests hang until release, and
// that counts the most it held at once (peak).
func holdingTarget(t *testing.T) (url string, release func(), peak func() int) {
	var mu sync.Mutex
	running, most := 0, 0
	ch := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
		}
		mu.Lock()
		running--
		mu.Unlock()
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() { release(); srv.Close() })
	return srv.URL, release, func() int {
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

// gate is an HTTP target whose requests hang until it is opened.
func gate(t *testing.T) (url string, open func()) {
	ch := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ch:
		case <-r.Context().Done():
		}
	}))
	var once sync.Once
	open = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() { open(); srv.Close() })
	return srv.URL, open
}

func TestDrainLetsRunningChecksFinishAndCommit(t *testing.T) {
	f := setup(t)
	url, open := gate(t)
	w, stop := f.workerWith(t, worker.Config{ID: "w", Concurrency: 8, DrainTimeout: time.Minute})
	f.submit(t, "b", "http", map[string]string{"url": url}, names(4))
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Claims(), 30*time.Second, "the claim", func(n int) bool { return n == 1 })
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }() // SIGTERM: the worker drains
	// While draining, the worker keeps its lease and its claim.
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Ready(), 30*time.Second, "no requeue while draining", func(n int) bool { return n == 0 })
	open()
	<-stopped
	rows := f.waitDone(t, "b")
	for _, r := range rows {
		if r.Status != queue.StatusOK || r.Worker != "w" || r.Attempts != 1 {
			t.Fatalf("row %+v, want ok by the draining worker on attempt 1", r)
		}
	}
	if s := w.Stats(); s.Committed != 4 || s.Released != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDrainTimeoutReleasesToAnotherWorkerAtOnce(t *testing.T) {
	f := setup(t)
	url, open := gate(t)
	w1, stop1 := f.workerWith(t, worker.Config{ID: "w1", Concurrency: 8, DrainTimeout: 50 * time.Millisecond})
	f.submit(t, "b", "http", map[string]string{"url": url}, names(4))
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Claims(), 30*time.Second, "w1's claim", func(n int) bool { return n == 1 })
	stop1() // the checks hang past the drain timeout: released
	if s := w1.Stats(); s.Released != 1 || s.Committed != 0 {
		t.Fatalf("w1 stats %+v, want its group released", s)
	}
	open()
	f.worker(t, "w2", 8)
	for _, r := range f.waitDone(t, "b") {
		// Released, not lost: the same attempt, no lost attempt in history.
		if r.Status != queue.StatusOK || r.Worker != "w2" || r.Attempts != 1 || len(r.History) != 0 {
			t.Fatalf("row %+v, want ok by w2 on attempt 1", r)
		}
	}
}

func TestKillEndsADrainAtOnce(t *testing.T) {
	f := setup(t)
	url, _ := gate(t)
	w, stop := f.workerWith(t, worker.Config{ID: "w", Concurrency: 8, DrainTimeout: time.Hour})
	f.submit(t, "b", "http", map[string]string{"url": url}, names(2))
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Claims(), 30*time.Second, "the claim", func(n int) bool { return n == 1 })
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }() // SIGTERM: a drain of up to an hour
	w.Kill()                               // a second SIGTERM
	<-stopped
	if s := w.Stats(); s.Released != 1 {
		t.Fatalf("stats %+v, want the group released", s)
	}
}

func TestALongCheckDoesNotHoldBackClaims(t *testing.T) {
	f := setup(t)
	w, _ := f.worker(t, "w", 4)
	// One check that outlives the test holds a slot...
	f.submit(t, "slow", "noop", map[string]string{"sleep": "1h"}, names(1))
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Claims(), 30*time.Second, "the slow task claimed", func(n int) bool { return n == 1 })
	// ...and fast checks go through the other three, the worker claiming
	// as they finish rather than waiting for a full group of four.
	f.submit(t, "fast", "noop", nil, names(40))
	rows := f.waitDone(t, "fast")
	if len(rows) != 40 {
		t.Fatalf("%d results, want 40", len(rows))
	}
	for _, r := range rows {
		if r.Status != queue.StatusOK {
			t.Fatalf("%s: %s %s", r.Task, r.Status, r.Message)
		}
	}
	if s := w.Stats(); s.Claimed != 41 {
		t.Fatalf("stats %+v, want the slow task and the 40 fast ones claimed", s)
	}
}

// TestACommitWhoseAnswerIsLostIsReconciledNotLeftRunning: the worker's
// link to etcd stops while its checks finish, so their commit times out
// with an unknown outcome (the request is held, and lands when the link
// heals). The worker re-reads what landed and commits the rest: every
// host ends ok on attempt 1 with its result written once, nothing waits
// for the claim to overrun, and nothing is counted as a zombie.
func TestACommitWhoseAnswerIsLostIsReconciledNotLeftRunning(t *testing.T) {
	f := setup(t)
	px, err := nettest.NewProxy(f.env.Endpoint, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	url, open := gate(t)
	m := metrics.NewWorker(prometheus.NewRegistry())
	w, err := worker.New(queue.New(etcdtest.ClientTo(t, px.Addr()), f.env.Prefix), worker.Config{ID: "w", Concurrency: 8,
		LeaseTTL: 20 * time.Second, CallTimeout: worker.MinCallTimeout, DrainTimeout: time.Nanosecond, Log: zerolog.Nop(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	f.goUntilCleanup(t, w.Run)
	f.submit(t, "b", "http", map[string]string{"url": url}, names(4))
	etcdtest.WaitFor(t, f.env.Client, f.q.Keys().Claims(), 30*time.Second, "the claim", func(n int) bool { return n == 1 })
	px.Hold()
	open() // the checks finish; their commit cannot reach etcd
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(m.CommitRetries) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the worker never retried its commit")
		}
		time.Sleep(10 * time.Millisecond) // polling a counter, not waiting out a race
	}
	px.Release()
	rows := f.waitDone(t, "b")
	for _, r := range rows {
		if r.Status != queue.StatusOK || r.Attempts != 1 || len(r.History) != 0 {
			t.Fatalf("row %+v, want ok on attempt 1", r)
		}
	}
	for _, kv := range etcdtest.KVs(t, f.env.Client, f.q.Keys().BatchResults("b")) {
		if kv.Version != 1 {
			t.Fatalf("%s written %d times", kv.Key, kv.Version)
		}
	}
	if s := w.Stats(); s.Rejected != 0 || s.Released != 0 {
		t.Fatalf("stats %+v: want no zombie and no release", s)
	}
}

// TestClaimedTasksThatCannotStartInTimeAreGivenBack: after a batch of
// instant checks the worker claims far ahead of its two slots; the next
// batch's checks take a second each, so most of what it claimed would
// wait past its claim's deadline and be revoked, an attempt lost. Tasks
// that wait longer than a quarter of their timeout are given back
// instead, and every host ends ok on its first attempt.
func TestClaimedTasksThatCannotStartInTimeAreGivenBack(t *testing.T) {
	f := setup(t)
	m := metrics.NewWorker(prometheus.NewRegistry())
	f.workerWith(t, worker.Config{ID: "w", Concurrency: 2, DrainTimeout: time.Nanosecond, Metrics: m})
	f.submit(t, "fast", "noop", nil, names(400))
	f.waitDone(t, "fast")
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "slow", Check: "noop", Params: map[string]string{"sleep": "1s"}, Hosts: names(24),
		Policy: queue.Policy{TimeoutMS: 2000, MaxAttempts: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.waitDone(t, "slow") {
		if r.Status != queue.StatusOK || r.Attempts != 1 {
			t.Fatalf("row %+v, want ok on attempt 1", r)
		}
	}
	if n := testutil.ToFloat64(m.TasksGivenBack); n == 0 {
		t.Fatal("no task was given back: the test did not claim ahead, and proves nothing")
	}
}
