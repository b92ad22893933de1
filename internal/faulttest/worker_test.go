//go:build linux

package faulttest

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

// TestKill9WorkerMidBatch: one of three workers is killed with SIGKILL
// while it holds claims in a 2,000-host batch. Its lease expires, the
// leader requeues what it had not finished, and the batch still ends with
// exactly one ok result per host, each written once; the dead worker's
// unfinished tasks are the ones that ran a second attempt.
func TestKill9WorkerMidBatch(t *testing.T) {
	h := setup(t)
	const batch, hosts, victim = "kill9", 2000, "w2"
	sched := h.start("scheduler", "scheduler", "--id", "sched")
	procs := map[string]*proctest.Proc{}
	for _, id := range []string{"w1", "w2", "w3"} {
		ttl := "10s" // survivors: a stall on a loaded machine must not expire them
		if id == victim {
			ttl = "2s"
		}
		procs[id] = h.start(id, "worker", "--id", id, "--lease-ttl", ttl, "--concurrency", "16")
	}
	inv, names := inventory(t, "k", hosts)
	start := time.Now()
	submit := h.start("submit", "submit", "-i", inv, "--check", "noop", "--param", "sleep=20ms",
		"--batch-id", batch, "--wait", "-o", "json")

	// Mid-batch: some results are in, and the victim holds a claim.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.waitKeys(ctx, h.keys.BatchResults(batch), "200 results", func(r *clientv3.GetResponse) bool { return r.Count >= 200 })
	h.waitKeys(ctx, h.keys.Claims(), "a claim held by "+victim, func(r *clientv3.GetResponse) bool { return len(claimsOf(r, victim)) > 0 })
	procs[victim].Signal(t, syscall.SIGKILL)
	killed := time.Now()
	if err := procs[victim].Wait(t, 5*time.Second); proctest.ExitCode(err) != -1 {
		t.Fatalf("%s after SIGKILL: %v, want killed by the signal", victim, err)
	}
	// Dead, it can no longer write, and its claims live until its lease
	// expires: its running records are what it held at the kill.
	groups, lost := h.unfinished(ctx, victim)
	t.Logf("killed %s %s after submit, holding %d groups with %d unfinished tasks",
		victim, killed.Sub(start).Round(time.Millisecond), len(groups), len(lost))

	if err := submit.Wait(t, 45*time.Second); err != nil {
		t.Fatalf("submit --wait: %v (exit %d), want exit 0: every host ok", err, proctest.ExitCode(err))
	}
	t.Logf("batch finished %s after the kill (%s in all)", time.Since(killed).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	rows := h.results(batch)
	stored := h.storedResults(batch) // also checks each result was written once
	if len(rows) != hosts || len(stored) != hosts {
		t.Fatalf("results: %d rows from `patrol results`, %d result keys; want %d of each", len(rows), len(stored), hosts)
	}
	byWorker := map[string]int{}
	var retried, landedInFlight int
	for _, name := range names {
		r, ok := rows[name]
		if !ok {
			t.Errorf("no row for %s", name)
			continue
		}
		byWorker[r.Worker]++
		if r.Status != queue.StatusOK {
			t.Errorf("%s: status %s (%s), want ok", name, r.Status, r.Message)
		}
		switch {
		case r.Attempts == 1:
			if lost[r.Task] {
				if r.Worker != victim {
					t.Errorf("%s: unfinished by %s at the kill, yet its result is attempt 1 by %s", name, victim, r.Worker)
				}
				landedInFlight++ // its completion was on its way when the victim died
			}
		case r.Attempts == 2:
			retried++
			if r.Worker == victim {
				t.Errorf("%s: attempt 2 committed by the dead worker %s", name, victim)
			}
			// Only the victim's work may have been lost and rerun.
			if len(r.History) != 1 || r.History[0].Worker != victim {
				t.Errorf("%s: attempt 2 with history %+v, want one lost attempt by %s", name, r.History, victim)
			}
		default:
			t.Errorf("%s: %d attempts, want 1, or 2 for the killed worker's tasks", name, r.Attempts)
		}
		if s := stored[r.Task]; s.Worker != r.Worker || s.Attempts != r.Attempts {
			t.Errorf("%s: `patrol results` shows %s attempt %d, etcd holds %s attempt %d", name, r.Worker, r.Attempts, s.Worker, s.Attempts)
		}
	}
	t.Logf("results by worker: %v; %d hosts ran a second attempt; %d of %s's unfinished tasks had their completion in flight at the kill",
		byWorker, retried, landedInFlight, victim)
	if len(lost) > landedInFlight && retried == 0 {
		t.Errorf("%s held %d unfinished tasks at the kill, but no host ran a second attempt", victim, len(lost))
	}
	if retried < len(lost)-landedInFlight {
		t.Errorf("%d hosts ran a second attempt, want at least the %d %s left unfinished", retried, len(lost)-landedInFlight, victim)
	}
	for id, p := range procs {
		if id != victim && len(p.Logs("zombie completion rejected")) > 0 {
			t.Errorf("%s had completions rejected; only the dead worker lost its claims", id)
		}
	}

	// On-call sees it: one lease expired, and the tasks it held requeued.
	m := sched.Scrape(t)
	t.Logf("scheduler metrics: lease expirations %v, tasks requeued %v, requeues timed %v",
		m["patrol_scheduler_lease_expirations_total"], m["patrol_scheduler_tasks_requeued_total"], m["patrol_scheduler_requeue_delay_seconds_count"])
	if got := m["patrol_scheduler_lease_expirations_total"]; got != 1 {
		t.Errorf("patrol_scheduler_lease_expirations_total = %v, want 1: %s's", got, victim)
	}
	if got, want := m["patrol_scheduler_tasks_requeued_total"], float64(len(lost)-landedInFlight); got < want || got > float64(len(lost)) {
		t.Errorf("patrol_scheduler_tasks_requeued_total = %v, want between %v and %v (what %s left unfinished)", got, want, len(lost), victim)
	}
	if got := m["patrol_scheduler_requeue_delay_seconds_count"]; got > float64(len(groups)) || got < 1 && m["patrol_scheduler_tasks_requeued_total"] > 0 {
		t.Errorf("patrol_scheduler_requeue_delay_seconds_count = %v, want one per group requeued, of the %d groups %s held", got, len(groups), victim)
	}
	for id, p := range procs {
		if id == victim {
			continue
		}
		if got := p.Scrape(t)["patrol_worker_zombie_completions_rejected_total"]; got != 0 {
			t.Errorf("%s: patrol_worker_zombie_completions_rejected_total = %v, want 0", id, got)
		}
	}
}

// TestSIGSTOPZombieIsFenced: a worker frozen with SIGSTOP while it holds
// claims outlives its lease. Its claims vanish, another worker reruns the
// tasks and commits them; resumed with SIGCONT, the zombie writes nothing:
// any late completion it attempts is rejected by the claim fence and
// logged. (Resumed, it usually sees its lease gone before its checks
// return and drops them unsent; TestPartitionedWorkerIsFenced makes the
// late commit certain.)
func TestSIGSTOPZombieIsFenced(t *testing.T) {
	h := setup(t)
	var zombie *proctest.Proc
	zombieScenario(t, h, zombieCase{
		sleep: "3s", leaseTTL: "2s",
		start:  func(args ...string) *proctest.Proc { zombie = h.start("zombie", args...); return zombie },
		freeze: func() { zombie.Signal(t, syscall.SIGSTOP) },
		thaw:   func() { zombie.Signal(t, syscall.SIGCONT) },
	})
}

// TestPartitionedWorkerIsFenced: a worker's writes to etcd are held back
// (a one-way partition, through a proxy) after its checks have finished
// and while its commit is on the wire. Its lease expires, another worker
// reruns the tasks and commits them; when the partition heals, the
// zombie's commit reaches etcd and every one of its completions is
// rejected by the claim fence and logged.
func TestPartitionedWorkerIsFenced(t *testing.T) {
	h := setup(t)
	px := newProxy(t, h.env.Endpoint)
	zombieScenario(t, h, zombieCase{
		// The checks end 2s after the claim, well inside the 4s lease the
		// worker still believes it holds: its commit is sent, then held.
		// The test holds the partition once it sees the claims, which
		// leaves it 2s before the commit is sent.
		sleep: "2s", leaseTTL: "4s", allRejected: true,
		start: func(args ...string) *proctest.Proc {
			return h.startEnv("zombie", []string{"PATROL_ENDPOINTS=" + px.Addr()}, args...)
		},
		freeze: px.Hold,
		thaw:   px.Release,
	})
}

// zombieCase is how a zombie is made: a worker that keeps running (or
// resumes) after its lease has expired.
type zombieCase struct {
	sleep, leaseTTL string
	start           func(args ...string) *proctest.Proc // starts the zombie-to-be
	freeze, thaw    func()
	allRejected     bool // every late completion must reach etcd and be rejected
}

// zombieScenario: the zombie claims every host of a batch and is frozen;
// once its claims have expired, a rescuer has rerun every host and the
// batch is finished, the zombie is thawed. Its late completions must not
// change any result.
func zombieScenario(t *testing.T, h *harness, zc zombieCase) {
	const batch, hosts = "zombie", 20
	sched := h.start("scheduler", "scheduler", "--id", "sched")
	zombie := zc.start("worker", "--id", "zombie", "--lease-ttl", zc.leaseTTL, "--concurrency", "32")
	inv, names := inventory(t, "z", hosts)
	h.run(30*time.Second, "submit", "-i", inv, "--check", "noop", "--param", "sleep="+zc.sleep, "--batch-id", batch, "-o", "json")

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	h.waitKeys(ctx, h.keys.Running(), "zombie to claim all hosts", func(r *clientv3.GetResponse) bool {
		n := 0
		for _, kv := range r.Kvs {
			var run queue.Running
			if json.Unmarshal(kv.Value, &run) == nil && run.Worker == "zombie" {
				n += len(run.Tasks)
			}
		}
		return n == hosts
	})
	zc.freeze()
	frozen := time.Now()
	groups, held := h.unfinished(ctx, "zombie")
	if len(held) != hosts {
		t.Fatalf("zombie holds %d unfinished tasks when frozen, want %d (its checks take %s)", len(held), hosts, zc.sleep)
	}
	rescuer := h.start("rescuer", "worker", "--id", "rescuer", "--lease-ttl", "10s", "--concurrency", "32")

	// The lease expires: etcd deletes the zombie's claims.
	h.waitKeys(ctx, h.keys.Claims(), "the zombie's claims to expire", func(r *clientv3.GetResponse) bool {
		return len(claimsOf(r, "zombie")) == 0
	})
	t.Logf("zombie's %d claims gone %s after the freeze", len(groups), time.Since(frozen).Round(time.Millisecond))
	// The rescuer reruns every host and the leader finishes the batch.
	h.waitKeys(ctx, h.keys.BatchSummary(batch), "the batch summary", func(r *clientv3.GetResponse) bool { return r.Count == 1 })
	t.Logf("batch finished %s after the freeze", time.Since(frozen).Round(time.Millisecond))
	before := h.storedResults(batch)

	zc.thaw()
	thawed := time.Now()
	// The session it lost ends once every late completion has been tried.
	zombie.WaitLog(t, 20*time.Second, "worker session ended", nil)
	t.Logf("zombie thawed; its lost session ended %s later", time.Since(thawed).Round(time.Millisecond))
	rejections := zombie.Logs("zombie completion rejected")
	seen := map[string]bool{}
	for _, l := range rejections {
		task := l.Str("task_id")
		if l.Str("level") != "warn" || l.Str("batch_id") != batch || !held[task] || seen[task] {
			t.Errorf("unexpected rejection line: %v", l)
		}
		seen[task] = true
	}
	if zc.allRejected && len(rejections) != hosts {
		t.Errorf("zombie logged %d \"zombie completion rejected\" lines, want one for each of its %d tasks", len(rejections), hosts)
	}

	after := h.storedResults(batch) // also checks each result was written once
	if len(after) != hosts {
		t.Fatalf("%d results, want %d", len(after), hosts)
	}
	for _, name := range names {
		task := queue.TaskID(name)
		r := after[task]
		if r.Worker != "rescuer" || r.Status != queue.StatusOK || r.Attempts != 2 {
			t.Errorf("%s: %s attempt %d by %q, want ok attempt 2 by rescuer", name, r.Status, r.Attempts, r.Worker)
		}
		if b := before[task]; !b.FinishedAt.Equal(r.FinishedAt) || b.Worker != r.Worker {
			t.Errorf("%s: result changed after the zombie was thawed: %+v, then %+v", name, b, r)
		}
	}
	if keys := etcdtest.Keys(t, h.env.Client, h.keys.Claims()); len(keys) > 0 {
		t.Errorf("claims left after the batch finished: %v", keys)
	}

	// The metrics agree: each rejection counted, the lease loss seen from
	// both sides, and the zombie's tasks requeued.
	zm := zombie.Scrape(t)
	if got := zm["patrol_worker_zombie_completions_rejected_total"]; got != float64(len(rejections)) {
		t.Errorf("zombie's patrol_worker_zombie_completions_rejected_total = %v, want %d (the rejections it logged)", got, len(rejections))
	}
	if got := zm["patrol_worker_keepalive_failures_total"]; got != 1 {
		t.Errorf("zombie's patrol_worker_keepalive_failures_total = %v, want 1", got)
	}
	sm := sched.Scrape(t)
	if got := sm["patrol_scheduler_lease_expirations_total"]; got != 1 {
		t.Errorf("patrol_scheduler_lease_expirations_total = %v, want 1: the zombie's", got)
	}
	if got := sm["patrol_scheduler_tasks_requeued_total"]; got != hosts {
		t.Errorf("patrol_scheduler_tasks_requeued_total = %v, want %d: every task the zombie held", got, hosts)
	}
	if got := rescuer.Scrape(t)[`patrol_worker_results_committed_total{check="noop",status="ok"}`]; got != hosts {
		t.Errorf("rescuer's ok results committed = %v, want %d", got, hosts)
	}
	t.Logf("zombie metrics: %v rejected, %v keepalive failures; scheduler: %v lease expirations, %v tasks requeued",
		zm["patrol_worker_zombie_completions_rejected_total"], zm["patrol_worker_keepalive_failures_total"],
		sm["patrol_scheduler_lease_expirations_total"], sm["patrol_scheduler_tasks_requeued_total"])

	// SIGTERM: the zombie exits 0, its counts agreeing with what it logged.
	zombie.Signal(t, syscall.SIGTERM)
	if err := zombie.Wait(t, 15*time.Second); err != nil {
		t.Errorf("zombie after SIGTERM: %v, want exit 0", err)
	}
	stopped := zombie.Logs("worker stopped")
	if len(stopped) != 1 {
		t.Fatalf("zombie logged %d \"worker stopped\" lines, want 1", len(stopped))
	}
	count := func(k string) int { n, _ := stopped[0][k].(float64); return int(n) }
	if count("committed") != 0 || count("rejected") != len(rejections) {
		t.Errorf("zombie's final counts %v: want committed 0, rejected %d (the rejections it logged)", stopped[0], len(rejections))
	}
	switch claimed := count("claimed"); {
	case claimed == 0 && !zc.allRejected:
		// Frozen between its claim transaction committing and the reply
		// being read: thawed past the call's deadline, it took the claim
		// for failed and never ran the checks (see the report).
		t.Logf("zombie never learnt its claim succeeded: %v", zombie.Logs("claim failed"))
	case claimed != hosts:
		t.Errorf("zombie's final counts %v: want claimed %d", stopped[0], hosts)
	}
	t.Logf("zombie: %d of its %d late completions reached etcd and were rejected; none was written", len(rejections), hosts)
	rescuer.Signal(t, syscall.SIGTERM)
	if err := rescuer.Wait(t, 15*time.Second); err != nil {
		t.Errorf("rescuer after SIGTERM: %v, want exit 0", err)
	}
}
