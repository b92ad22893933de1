//go:build linux

package faulttest

import (
	"context"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/queue"
)

// TestSIGTERMDrainsThenReleasesAtOnce: a worker holding tasks gets SIGTERM.
// It drains (stops claiming, lets checks run up to --drain-timeout), then
// releases what did not finish and exits 0. Its lease is a minute long, so
// a batch that finishes well inside that proves the released tasks were
// requeued at once rather than when the lease expired; every host has one
// result, written once, on its first attempt.
func TestSIGTERMDrainsThenReleasesAtOnce(t *testing.T) {
	h := setup(t)
	h.start("scheduler", "scheduler", "--id", "sched", "--session-ttl", "2s")
	draining := h.start("draining", "worker", "--id", "draining", "--lease-ttl", "60s", "--drain-timeout", "500ms", "--concurrency", "20")
	path, hosts := inventory(t, "drain", 20)
	submit := h.start("submit", "submit", "-i", path, "--check", "noop", "--param", "sleep=4s", "--batch-id", "drained", "--wait")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.waitKeys(ctx, h.keys.Claims(), "the draining worker's claims", func(r *clientv3.GetResponse) bool {
		return len(claimsOf(r, "draining")) > 0
	})
	sent := time.Now()
	draining.Signal(t, syscall.SIGTERM)
	draining.WaitLog(t, 10*time.Second, "draining: no new claims", nil)
	if err := draining.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("draining worker exited with %v, want 0", err)
	}
	stopped := time.Since(sent)
	h.start("rescuer", "worker", "--id", "rescuer", "--concurrency", "20")
	if err := submit.Wait(t, 40*time.Second); err != nil {
		t.Fatalf("submit --wait: %v, want exit 0", err)
	}
	took := time.Since(sent)
	if took > 30*time.Second {
		t.Fatalf("batch finished %s after SIGTERM: the released tasks waited for the 60s lease", took)
	}
	results := h.storedResults("drained") // each written exactly once
	if len(results) != len(hosts) {
		t.Fatalf("%d results for %d hosts", len(results), len(hosts))
	}
	for id, r := range results {
		if r.Status != queue.StatusOK || r.Attempts != 1 || r.Worker != "rescuer" {
			t.Errorf("%s: %+v, want ok on attempt 1 by the rescuer", id, r)
		}
	}
	t.Logf("draining worker exited %s after SIGTERM; the batch finished %s after it", stopped.Round(time.Millisecond), took.Round(time.Millisecond))
}
