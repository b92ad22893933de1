//go:build linux

package faulttest

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

// TestSchedulerKill9Failover: of two schedulers, the leader is killed with
// SIGKILL. Its election key goes with its session lease and the other
// candidate leads within the session TTL (plus etcd's expiry granularity);
// a batch submitted afterwards runs to completion under the new leader.
func TestSchedulerKill9Failover(t *testing.T) {
	h := setup(t)
	const ttl = 2 * time.Second
	scheds := map[string]*proctest.Proc{}
	for _, id := range []string{"s1", "s2"} {
		scheds[id] = h.start(id, "scheduler", "--id", id, "--session-ttl", ttl.String())
	}
	h.start("worker", "worker", "--id", "w1", "--lease-ttl", "10s", "--concurrency", "16")

	// Both candidates are campaigning: the leader holds the oldest key.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := h.waitKeys(ctx, h.keys.Election(), "two candidates", func(r *clientv3.GetResponse) bool { return r.Count == 2 })
	first := leaderOf(t, resp)
	var next string
	for id := range scheds {
		if id != first {
			next = id
		}
	}
	scheds[first].WaitLog(t, 10*time.Second, "leading", nil)

	scheds[first].Signal(t, syscall.SIGKILL)
	killed := time.Now()
	wctx, wcancel := context.WithDeadline(ctx, killed.Add(ttl+10*time.Second))
	defer wcancel()
	h.waitKeys(wctx, h.keys.Election(), next+" to lead", func(r *clientv3.GetResponse) bool {
		return r.Count > 0 && leaderOf(t, r) == next
	})
	failover := time.Since(killed)
	t.Logf("failover: %s leads %s after SIGKILL of %s (session TTL %s)", next, failover.Round(time.Millisecond), first, ttl)
	// Failover is driven by the session's expiry: here it takes about TTL
	// plus etcd's 500ms expiry tick. The bound leaves room for a loaded
	// machine, and still fails a failover that waits for anything slower.
	if bound := ttl + 3*time.Second; failover > bound {
		t.Errorf("failover took %s, want at most TTL+3s = %s", failover.Round(time.Millisecond), bound)
	}
	if err := scheds[first].Wait(t, 5*time.Second); proctest.ExitCode(err) != -1 {
		t.Errorf("%s after SIGKILL: %v, want killed by the signal", first, err)
	}
	scheds[next].WaitLog(t, 10*time.Second, "leading", nil)
	t.Logf("%s logged \"leading\" %s after the kill", next, time.Since(killed).Round(time.Millisecond))

	// The new leader runs a batch submitted after the failover.
	inv, _ := inventory(t, "f", 100)
	start := time.Now()
	h.run(30*time.Second, "submit", "-i", inv, "--check", "noop", "--batch-id", "after-failover", "--wait", "-o", "json")
	t.Logf("batch of 100 submitted after the failover finished in %s", time.Since(start).Round(time.Millisecond))
	rows := h.results("after-failover")
	h.storedResults("after-failover")
	if len(rows) != 100 {
		t.Errorf("%d result rows, want 100", len(rows))
	}
	for host, r := range rows {
		if r.Status != queue.StatusOK || r.Attempts != 1 {
			t.Errorf("%s: %s after %d attempts, want ok after 1", host, r.Status, r.Attempts)
		}
	}
	fin := scheds[next].WaitLog(t, 10*time.Second, "batch finished", func(l proctest.LogLine) bool { return l.Str("batch_id") == "after-failover" })
	if fin.Str("scheduler_id") != next {
		t.Errorf("batch finished by %q, want the new leader %s", fin.Str("scheduler_id"), next)
	}
}

// leaderOf returns the ID in the oldest election key (the leader's), in a
// listing sorted by create revision.
func leaderOf(t *testing.T, r *clientv3.GetResponse) string {
	t.Helper()
	var info queue.LeaderInfo
	if err := json.Unmarshal(r.Kvs[0].Value, &info); err != nil {
		t.Fatalf("election key %s: %v", r.Kvs[0].Key, err)
	}
	return info.ID
}
