//go:build linux

package clusterfault

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/queue"
)

// outcome is what the invariant check counted over a finished batch.
type outcome struct {
	statuses map[queue.Status]int
	retried  int // hosts that took more than one attempt
	// zombies is the completions the claim fence rejected, as the workers
	// logged and counted them.
	zombies int
}

// checkInvariants checks what must hold after any fault once a batch has
// its summary, over etcd and over `patrol results -o json`:
//
//   - every host has exactly one result, a final one, and `patrol
//     results` shows the same one etcd holds;
//   - every result key was written once (version 1);
//   - nothing is left claimed, running, pending or delayed;
//   - no host took more than --max-attempts attempts;
//   - every completion a worker logged as rejected by the fence is in its
//     metric (and the other way round);
//   - no scheduler or worker exited.
func (h *harness) checkInvariants(batch string, hosts []string) outcome {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := outcome{statuses: map[queue.Status]int{}}

	var rows []queue.HostResult
	if err := json.Unmarshal(h.mustRun(60*time.Second, "results", batch, "-o", "json"), &rows); err != nil {
		h.t.Fatalf("patrol results -o json: %v", err)
	}
	byHost := map[string]queue.HostResult{}
	for _, r := range rows {
		if _, dup := byHost[r.Host]; dup {
			h.t.Errorf("%s: two rows in `patrol results`", r.Host)
		}
		byHost[r.Host] = r
	}

	resp, err := h.c.cli.Get(ctx, h.keys.BatchResults(batch), clientv3.WithPrefix())
	if err != nil {
		h.t.Fatalf("read the results of %s: %v", batch, err)
	}
	stored := map[string]queue.Result{}
	for _, kv := range resp.Kvs {
		var r queue.Result
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			h.t.Errorf("%s: %v", kv.Key, err)
			continue
		}
		if kv.Version != 1 {
			h.t.Errorf("%s written %d times (version %d), want once; now %s attempt %d by %s, earlier attempts %s",
				kv.Key, kv.Version, kv.Version, r.Status, r.Attempts, r.Worker, history(r.History))
		}
		stored[strings.TrimPrefix(string(kv.Key), h.keys.BatchResults(batch))] = r
	}
	if len(rows) != len(hosts) || len(stored) != len(hosts) {
		h.t.Errorf("%d rows from `patrol results`, %d result keys, for %d hosts", len(rows), len(stored), len(hosts))
	}

	for _, host := range hosts {
		r, ok := byHost[host]
		s, inEtcd := stored[queue.TaskID(host)]
		switch {
		case !ok || !inEtcd:
			h.t.Errorf("%s: row %v, result key %v: want both", host, ok, inEtcd)
			continue
		case !r.Status.Final():
			h.t.Errorf("%s: %s, not a final status", host, r.Status)
		case r.Status != s.Status || r.Attempts != s.Attempts || r.Worker != s.Worker:
			h.t.Errorf("%s: `patrol results` shows %s attempt %d by %s, etcd holds %s attempt %d by %s",
				host, r.Status, r.Attempts, r.Worker, s.Status, s.Attempts, s.Worker)
		}
		if r.Attempts < 1 || r.Attempts > maxAttempts {
			h.t.Errorf("%s: %d attempts, want 1 to %d", host, r.Attempts, maxAttempts)
		}
		out.statuses[r.Status]++
		if r.Attempts > 1 {
			out.retried++
		}
	}

	for _, p := range []string{h.keys.Claims(), h.keys.Running(), h.keys.Done(), h.keys.Ready(),
		h.keys.Delayed(), h.keys.Held(), h.keys.Active()} {
		resp, err := h.c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			h.t.Fatalf("read %s: %v", p, err)
		}
		for _, kv := range resp.Kvs {
			h.t.Errorf("%s left after the batch finished", kv.Key)
		}
	}
	if n := h.tl.stillRunning(); n > 0 {
		h.t.Errorf("the timeline has %d tasks still named by a running record", n)
	}

	for id, p := range h.roles() {
		if p.Exited() {
			h.t.Errorf("%s exited during the scenario", id)
		}
	}
	for id, w := range h.workers {
		if w.Exited() {
			continue
		}
		logged := len(w.Logs("zombie completion rejected"))
		counted := int(w.Scrape(h.t)["patrol_worker_zombie_completions_rejected_total"])
		if logged != counted {
			h.t.Errorf("%s logged %d zombie rejections and counted %d", id, logged, counted)
		}
		out.zombies += counted
	}
	return out
}

// history renders earlier attempts for a failure message.
func history(as []queue.Attempt) string {
	var parts []string
	for _, a := range as {
		parts = append(parts, fmt.Sprintf("[%d %s by %s: %q]", a.Attempt, a.Status, a.Worker, a.Message))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
