//go:build linux

package clusterfault

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/queue"
)

// Every scenario's batch: about four seconds of work for 3 workers × 16
// slots, long enough that the fault lands mid-batch.
const (
	batchHosts = 2000
	batchSleep = "100ms"
	// faultAfter is the share of results in when the fault begins.
	faultAfter = 5 // a fifth
)

// scenario is one fault, injected into a batch on a fresh cluster.
type scenario struct {
	name string
	// fault injects the fault once a fifth of the batch's results are in,
	// returns when it is over (a restarted member serving again, a frozen
	// one resumed), and fills in what it measured. What it returns, if
	// anything, runs once the batch has its summary.
	fault func(ctx context.Context, h *harness, f *figures) (after func())
	// The figures to reach, printed beside the measured ones; not
	// asserted yet.
	target targets
}

// targets are the figures for a scenario; zero values are none.
type targets struct {
	overBaseline time.Duration // batch time at most the baseline's plus this
	stall        time.Duration // commits resume within this
	noLeaseLost  bool          // no worker loses its lease
	afterLeader  time.Duration // no host running longer than this after etcd has a leader again
	noExit       bool          // no scheduler or worker exits
}

var scenarios = []scenario{
	{name: "baseline"},
	{
		name:   "leader kill -9, restart after 5s",
		fault:  leaderKill,
		target: targets{overBaseline: 10 * time.Second, afterLeader: leaseTTL},
	},
	{
		name:   "leader SIGSTOP 30s",
		fault:  leaderStop,
		target: targets{overBaseline: 8 * time.Second, stall: 5 * time.Second, noLeaseLost: true},
	},
	{name: "follower kill -9", fault: followerKill},
	{
		name:   "all members kill -9, restart after 10s",
		fault:  outage,
		target: targets{overBaseline: 15 * time.Second, noExit: true},
	},
	{name: "compaction every 0.2s, scheduler SIGSTOP 3s", fault: compactionStorm},
}

// TestClusterFaults runs each scenario on a fresh cluster, checks the
// invariants after it, and prints every scenario's figures in one table
// (also written to the file $CLUSTERFAULT_REPORT names, for CI, which
// shows no test output from a package that passes).
func TestClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-member etcd cluster and the patrol binary as processes; skipped with -short")
	}
	var rows []figures
	for _, sc := range scenarios {
		f := figures{name: sc.name, target: sc.target}
		started := false // -run may leave a scenario out
		t.Run(sc.name, func(t *testing.T) { started = true; f = runScenario(t, sc) })
		if started {
			rows = append(rows, f)
		}
	}
	nospace := ""
	t.Run("NOSPACE", func(t *testing.T) { nospace = "FAILED: see the test log above"; nospace = runNOSPACE(t) })
	out := report(rows, nospace)
	t.Log("\n" + out)
	if path := os.Getenv("CLUSTERFAULT_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o666); err != nil {
			t.Errorf("write the report: %v", err)
		}
	}
}

// runScenario runs one batch through sc's fault and returns its figures.
func runScenario(t *testing.T, sc scenario) figures {
	h := setup(t, clusterConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := figures{name: sc.name, target: sc.target}
	const batch = "faulted"
	hosts, began := h.submit(batch, batchHosts, batchSleep)
	var after func()
	if sc.fault != nil {
		h.tl.awaitResults(t, time.Minute, batch, batchHosts/faultAfter)
		f.faultAt = time.Since(began)
		after = sc.fault(ctx, h, &f)
	}
	done := h.tl.awaitSummary(t, 3*time.Minute, batch)
	if after != nil {
		after()
	}
	f.batch = done.Sub(began)
	// A group whose final commit was lost keeps its claim until the
	// scheduler revokes it as overdue (--timeout plus 5 s after the claim)
	// and recovers it: the invariants are checked once that has happened.
	if f.heldAtSummary = h.tl.heldGroups(); f.heldAtSummary > 0 {
		f.heldFor = h.tl.awaitNoneHeld(t, 2*time.Minute).Sub(done)
	}
	var from time.Time
	f.stall, from = h.tl.stall(batch, done)
	f.stallAt = from.Sub(began)
	f.longest, f.afterLeader = h.tl.longestRunning(f.leaderAgain)
	f.longestAt = f.longest.start.Sub(began)

	out := h.checkInvariants(batch, hosts)
	f.retried, f.zombies = out.retried, out.zombies
	if len(out.statuses) != 1 || out.statuses[queue.StatusOK] != batchHosts {
		f.notes = append(f.notes, fmt.Sprintf("statuses %v", out.statuses))
	}
	f.exited = h.exited()
	if total := h.workerMetric("patrol_worker_keepalive_failures_total"); f.returned {
		f.lostAtReturn = total - f.leasesLost
	} else {
		f.leasesLost = total
	}
	if os.Getenv("CLUSTERFAULT_DEBUG") != "" { // the workers' lease, session and failure lines, to see why a figure moved
		for id, w := range h.workers {
			for _, l := range w.Stderr() {
				if strings.Contains(l, "lease") || strings.Contains(l, "session") || strings.Contains(l, "failed") {
					t.Logf("%s: %s", id, l)
				}
			}
		}
	}
	if os.Getenv("CLUSTERFAULT_DEBUG") != "" {
		for i, m := range h.c.members {
			if m.proc == nil {
				continue
			}
			for _, l := range m.proc.Stderr() {
				if strings.Contains(l, "lease") || strings.Contains(l, "revok") || strings.Contains(l, "leader") {
					t.Logf("member%d: %s", i, l)
				}
			}
		}
	}
	if n := h.tl.watchRestarts(); n > 0 {
		f.notes = append(f.notes, fmt.Sprintf("the suite's own watches were compacted %d times", n))
	}
	f.ran, f.violated = true, t.Failed()
	t.Logf("%s: batch %s, stall %s from +%s, %d worker leases lost, longest running %s (%s), %d hosts retried, %d zombie completions rejected, exited %v; %v",
		sc.name, round(f.batch), round(f.stall), round(f.stallAt), f.leasesLost, round(f.longest.end.Sub(f.longest.start)),
		f.longest.host, f.retried, f.zombies, f.exited, f.notes)
	return f
}

// leaderKill kills the etcd leader with SIGKILL, and restarts it from its
// data directory 5 s later.
func leaderKill(ctx context.Context, h *harness, f *figures) func() {
	leaderAway(ctx, h, f, "kill", 5*time.Second, h.c.kill, h.c.restart)
	return nil
}

// leaderStop freezes the etcd leader with SIGSTOP for 30 s: the other two
// keep a quorum and elect a leader.
func leaderStop(ctx context.Context, h *harness, f *figures) func() {
	leaderAway(ctx, h, f, "SIGSTOP", 30*time.Second, h.c.stop, h.c.cont)
	return nil
}

// leaderAway takes the etcd leader away with away (a kill, a freeze),
// notes when the others have elected a leader, and brings it back with
// back once d has passed since it went.
func leaderAway(ctx context.Context, h *harness, f *figures, what string, d time.Duration, away, back func(...*member)) {
	lead := h.c.leader(ctx)
	next := h.c.newLeader(h.c.others(lead)[0], lead)
	went := time.Now()
	away(lead)
	_, f.leaderAgain = next()
	f.notes = append(f.notes, fmt.Sprintf("etcd had a leader again %s after the %s", round(f.leaderAgain.Sub(went)), what))
	<-time.After(time.Until(went.Add(d))) // the fault itself: the leader away for d
	f.leasesLost, f.returned = h.workerMetric("patrol_worker_keepalive_failures_total"), true
	back(lead)
}

// followerKill kills a follower with SIGKILL for good: two members remain,
// a quorum with no margin.
func followerKill(ctx context.Context, h *harness, f *figures) func() {
	h.c.kill(h.c.others(h.c.leader(ctx))[0])
	return nil
}

// outage kills every member with SIGKILL and restarts them 10 s later.
func outage(ctx context.Context, h *harness, f *figures) func() {
	killed := time.Now()
	h.c.kill(h.c.members...)
	<-time.After(time.Until(killed.Add(10 * time.Second))) // the fault: no etcd for 10 s
	h.c.restart(h.c.members...)
	f.notes = append(f.notes, fmt.Sprintf("etcd served again %s after the kill", round(time.Since(killed))))
	return nil
}

// compactionStorm compacts the cluster to its current revision every
// 0.2 s until the batch finishes, and meanwhile freezes the leading
// scheduler for 3 s (less than its session TTL), so that its watches
// (results, claims, workers) fall behind a compaction.
func compactionStorm(ctx context.Context, h *harness, f *figures) func() {
	stop := h.compactEvery(200 * time.Millisecond)
	id, s := h.leadingScheduler(ctx)
	s.Signal(h.t, syscall.SIGSTOP)
	<-time.After(3 * time.Second) // the fault: a watcher paused
	s.Signal(h.t, syscall.SIGCONT)
	return func() {
		f.notes = append(f.notes, fmt.Sprintf("%d compactions; leading scheduler %s frozen 3s", stop(), id))
	}
}

// compactEvery compacts the cluster to its current revision at every tick
// until the returned stop is called (or the test ends), which returns how
// many compactions succeeded.
func (h *harness) compactEvery(every time.Duration) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := 0
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := h.c.cli.Get(cctx, h.keys.Election(), clientv3.WithCountOnly())
			if err == nil {
				if _, err = h.c.cli.Compact(cctx, resp.Header.Revision); err == nil {
					n++
				}
			}
			ccancel()
		}
	}()
	stop = func() int {
		cancel()
		<-done
		return n
	}
	h.t.Cleanup(func() { stop() })
	return stop
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}
