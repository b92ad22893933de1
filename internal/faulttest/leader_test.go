//go:build linux

package faulttest

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

// TestLeaderKill9DuringSharding: of three schedulers, the leader is killed
// with SIGKILL as soon as it has written the first sharding transaction of
// a 20,000-host batch (eight lanes of 2,500 hosts), while two workers
// already run its first tasks. A successor resumes from the lanes' progress
// counters: every host gets exactly one ready key (one put, never a second
// one) and exactly one result, ok on its first attempt and written once.
func TestLeaderKill9DuringSharding(t *testing.T) {
	h := setup(t)
	const batch, hosts, ttl = "kill9-shard", 20000, 2 * time.Second
	scheds := h.startSchedulers(ttl, "s1", "s2", "s3")
	for _, id := range []string{"w1", "w2"} {
		h.start(id, "worker", "--id", id, "--lease-ttl", "10s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := h.leader(ctx, scheds)

	// Count every put of a ready key from now on: under this test's
	// prefix only this batch's tasks are made ready.
	puts := h.watchPuts(ctx, h.keys.Ready())
	inv, names := inventory(t, "s", hosts)
	start := time.Now()
	submit := h.start("submit", "submit", "-i", inv, "--check", "noop", "--batch-id", batch, "-o", "json")

	h.waitKeys(ctx, h.keys.BatchProgress(batch), "sharding to start", func(r *clientv3.GetResponse) bool { return r.Count > 0 })
	scheds[first].Signal(t, syscall.SIGKILL)
	killed := time.Now()
	if err := scheds[first].Wait(t, 5*time.Second); proctest.ExitCode(err) != -1 {
		t.Fatalf("%s after SIGKILL: %v, want killed by the signal", first, err)
	}
	// Reaped, it sends nothing more: this is about what it sharded.
	atKill := h.progress(ctx, batch)
	t.Logf("killed leader %s %s after submit, %d of %d hosts sharded", first,
		killed.Sub(start).Round(time.Millisecond), atKill, hosts)
	if atKill >= hosts {
		t.Fatalf("sharding had finished when the leader was killed: the batch is too small to test a takeover mid-sharding")
	}
	if err := submit.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("submit: %v", err)
	}

	next := h.nextLeader(ctx, first, killed)
	t.Logf("%s leads %s after the kill", next, time.Since(killed).Round(time.Millisecond))
	resumed := scheds[next].WaitLog(t, 30*time.Second, "batch sharded", func(l proctest.LogLine) bool { return l.Str("batch_id") == batch })
	t.Logf("%s resumed sharding: the remaining %d hosts took %.0fms", next, hosts-atKill, resumed["took"])

	h.waitKeys(ctx, h.keys.BatchSummary(batch), "the batch summary", func(r *clientv3.GetResponse) bool { return r.Count == 1 })
	t.Logf("batch of %d finished %s after the kill (%s in all)", hosts,
		time.Since(killed).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if n := h.progress(ctx, batch); n != hosts {
		t.Errorf("lanes' progress adds up to %d, want %d", n, hosts)
	}

	stored := h.storedResults(batch) // also checks each result was written once
	if len(stored) != hosts {
		t.Errorf("%d results, want %d", len(stored), hosts)
	}
	bad := 0
	for _, name := range names {
		r, ok := stored[queue.TaskID(name)]
		if (!ok || r.Status != queue.StatusOK || r.Attempts != 1) && bad < 10 {
			bad++
			t.Errorf("%s: result %+v (present %v), want ok on attempt 1: no worker died", name, r, ok)
		}
	}

	// Every host's ready key was put once: the successor resumed where the
	// dead leader's last committed transaction left its lane.
	counts := puts.wait(t, hosts)
	twice := 0
	for key, n := range counts {
		if n != 1 && twice < 10 {
			twice++
			t.Errorf("ready key %s put %d times, want once", key, n)
		}
	}
	if left := h.count(ctx, h.keys.Ready()); left != 0 {
		t.Errorf("%d ready keys left after the batch finished", left)
	}
}

// TestLeaderKill9DuringExecution: the leader is killed with SIGKILL while
// workers are running a sharded batch. The workers carry on without a
// leader; the successor counts the results and writes the summary once.
func TestLeaderKill9DuringExecution(t *testing.T) {
	h := setup(t)
	const batch, hosts, ttl = "kill9-exec", 2000, 2 * time.Second
	scheds := h.startSchedulers(ttl, "s1", "s2")
	for _, id := range []string{"w1", "w2"} {
		h.start(id, "worker", "--id", id, "--lease-ttl", "10s", "--concurrency", "16")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	first := h.leader(ctx, scheds)

	inv, names := inventory(t, "e", hosts)
	start := time.Now()
	h.run(30*time.Second, "submit", "-i", inv, "--check", "noop", "--param", "sleep=50ms", "--batch-id", batch, "-o", "json")
	h.waitKeys(ctx, h.keys.BatchResults(batch), "200 results", func(r *clientv3.GetResponse) bool { return r.Count >= 200 })
	scheds[first].Signal(t, syscall.SIGKILL)
	killed := time.Now()
	if err := scheds[first].Wait(t, 5*time.Second); proctest.ExitCode(err) != -1 {
		t.Fatalf("%s after SIGKILL: %v, want killed by the signal", first, err)
	}
	atKill := h.count(ctx, h.keys.BatchResults(batch))
	t.Logf("killed leader %s %s after submit, with %d of %d results in", first, killed.Sub(start).Round(time.Millisecond), atKill, hosts)
	if atKill >= hosts {
		t.Errorf("every result was in when the leader was killed: not mid-execution")
	}

	next := h.nextLeader(ctx, first, killed)
	t.Logf("%s leads %s after the kill", next, time.Since(killed).Round(time.Millisecond))
	h.waitKeys(ctx, h.keys.BatchSummary(batch), "the batch summary", func(r *clientv3.GetResponse) bool { return r.Count == 1 })
	t.Logf("batch finished %s after the kill (%s in all)", time.Since(killed).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	fin := scheds[next].WaitLog(t, 10*time.Second, "batch finished", func(l proctest.LogLine) bool { return l.Str("batch_id") == batch })
	if n, _ := fin["ok"].(float64); int(n) != hosts {
		t.Errorf("summary logged by %s: %v, want ok=%d", next, fin, hosts)
	}
	h.checkSummaryOnce(ctx, batch, hosts)

	stored := h.storedResults(batch) // also checks each result was written once
	if len(stored) != hosts {
		t.Errorf("%d results, want %d", len(stored), hosts)
	}
	for _, name := range names {
		if r, ok := stored[queue.TaskID(name)]; !ok || r.Status != queue.StatusOK || r.Attempts != 1 {
			t.Errorf("%s: result %+v (present %v), want ok on attempt 1: no worker died", name, r, ok)
		}
	}
}

// TestDeposedLeaderIsFenced: the leader is frozen with SIGSTOP until its
// session expires and the other scheduler leads and finishes a batch.
// Resumed with SIGCONT, the deposed leader must write nothing: it stops
// leading (its etcd client sees the lease's deadline long past and ends the
// session, so in practice it steps down within milliseconds, before any
// write; one that got through would be refused by the fence), nothing of
// the finished batch changes, and a second batch is finished once, by the
// new leader.
func TestDeposedLeaderIsFenced(t *testing.T) {
	h := setup(t)
	const ttl = 2 * time.Second
	scheds := h.startSchedulers(ttl, "s1", "s2")
	h.start("w1", "worker", "--id", "w1", "--lease-ttl", "10s", "--concurrency", "32")
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	old := h.leader(ctx, scheds)
	next := other(scheds, old)

	scheds[old].Signal(t, syscall.SIGSTOP)
	stopped := time.Now()
	h.waitLeader(ctx, next, stopped.Add(ttl+5*time.Second))
	takeover := time.Since(stopped)
	t.Logf("takeover: %s leads %s after SIGSTOP of %s (session TTL %s)", next, takeover.Round(time.Millisecond), old, ttl)
	scheds[next].WaitLog(t, 10*time.Second, "leading", nil)

	inv, _ := inventory(t, "d", 200)
	h.run(30*time.Second, "submit", "-i", inv, "--check", "noop", "--batch-id", "while-stopped", "--wait", "-o", "json")
	first := h.checkSummaryOnce(ctx, "while-stopped", 200)

	// Whatever is written from here on happens after the thaw.
	rev := h.revision(ctx)
	if n := len(scheds[old].Logs("stopped leading")); n != 0 {
		t.Fatalf("%s logged \"stopped leading\" while frozen", old)
	}
	scheds[old].Signal(t, syscall.SIGCONT)
	thawed := time.Now()
	l := scheds[old].WaitLog(t, 15*time.Second, "stopped leading", nil)
	t.Logf("%s thawed; logged %q (error %q) %s later", old, l.Str("message"), l.Str("error"), time.Since(thawed).Round(10*time.Microsecond))
	// Between the thaw and its stepping down, with the new leader and the
	// worker idle, no batch or task may have been written.
	window := h.writesSince(ctx, rev)
	t.Logf("%d writes to etcd between the thaw and %s stepping down", len(window), old)
	for _, ev := range h.taskWrites(window) {
		t.Errorf("%s %s at revision %d, while the thawed %s had not yet stepped down: %q", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, old, ev.Kv.Value)
	}

	h.run(30*time.Second, "submit", "-i", inv, "--check", "noop", "--batch-id", "after-thaw", "--wait", "-o", "json")
	h.checkSummaryOnce(ctx, "after-thaw", 200)
	if again := h.checkSummaryOnce(ctx, "while-stopped", 200); again != first {
		t.Errorf("summary of while-stopped rewritten after the thaw (mod revision %d, was %d)", again, first)
	}
	// Nothing of the batch finished while it was frozen changed since.
	for _, prefix := range []string{h.keys.Batch("while-stopped"), h.keys.BatchResults("while-stopped"), h.keys.FinishedBatch("while-stopped")} {
		resp, err := h.env.Client.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if kv.ModRevision > rev {
				t.Errorf("%s written at revision %d, after the deposed leader was thawed (revision %d)", kv.Key, kv.ModRevision, rev)
			}
		}
	}
	if n := h.count(ctx, h.keys.ActiveBatch("while-stopped")); n != 0 {
		t.Errorf("while-stopped is active again after the thaw")
	}

	for _, batch := range []string{"while-stopped", "after-thaw"} {
		fin := scheds[next].Logs("batch finished")
		if !hasBatch(fin, batch) {
			t.Errorf("%s did not log finishing %s", next, batch)
		}
		if hasBatch(scheds[old].Logs("batch finished"), batch) {
			t.Errorf("the deposed leader %s logged finishing %s", old, batch)
		}
	}
	// (The match on "leading" also finds "stopped leading": count exact ones.)
	if n := countExact(scheds[old].Logs("leading"), "leading"); n != 1 {
		t.Errorf("%s logged \"leading\" %d times, want once: it must not lead again while %s does", old, n, next)
	}
}

// startSchedulers starts one `patrol scheduler` per ID with the session TTL.
func (h *harness) startSchedulers(ttl time.Duration, ids ...string) map[string]*proctest.Proc {
	out := map[string]*proctest.Proc{}
	for _, id := range ids {
		out[id] = h.start(id, "scheduler", "--id", id, "--session-ttl", ttl.String())
	}
	return out
}

// leader waits until every scheduler campaigns and the leader (the oldest
// election key) logs that it leads, and returns its ID.
func (h *harness) leader(ctx context.Context, scheds map[string]*proctest.Proc) string {
	h.t.Helper()
	resp := h.waitKeys(ctx, h.keys.Election(), "every candidate to campaign", func(r *clientv3.GetResponse) bool {
		return int(r.Count) == len(scheds)
	})
	id := leaderOf(h.t, resp)
	scheds[id].WaitLog(h.t, 10*time.Second, "leading", nil)
	return id
}

// waitLeader waits until id holds the oldest election key, or fails at
// deadline.
func (h *harness) waitLeader(ctx context.Context, id string, deadline time.Time) {
	h.t.Helper()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	h.waitKeys(ctx, h.keys.Election(), id+" to lead", func(r *clientv3.GetResponse) bool {
		return r.Count > 0 && leaderOf(h.t, r) == id
	})
}

// nextLeader waits until a scheduler other than dead holds the oldest
// election key (within the TTL and a few seconds of killed) and returns it.
func (h *harness) nextLeader(ctx context.Context, dead string, killed time.Time) string {
	h.t.Helper()
	ctx, cancel := context.WithDeadline(ctx, killed.Add(10*time.Second))
	defer cancel()
	resp := h.waitKeys(ctx, h.keys.Election(), "a successor to "+dead, func(r *clientv3.GetResponse) bool {
		return r.Count > 0 && leaderOf(h.t, r) != dead
	})
	return leaderOf(h.t, resp)
}

// other returns the ID in scheds that is not id (of two).
func other(scheds map[string]*proctest.Proc, id string) string {
	for o := range scheds {
		if o != id {
			return o
		}
	}
	return ""
}

// progress returns the sum of a batch's sharding lanes' progress counters.
func (h *harness) progress(ctx context.Context, batch string) int {
	h.t.Helper()
	resp, err := h.env.Client.Get(ctx, h.keys.BatchProgress(batch), clientv3.WithPrefix())
	if err != nil {
		h.t.Fatal(err)
	}
	sum := 0
	for _, kv := range resp.Kvs {
		n, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			h.t.Fatalf("%s: %q is not a count", kv.Key, kv.Value)
		}
		sum += n
	}
	return sum
}

// count returns how many keys are under prefix (or are the key itself).
func (h *harness) count(ctx context.Context, prefix string) int {
	h.t.Helper()
	resp, err := h.env.Client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		h.t.Fatal(err)
	}
	return int(resp.Count)
}

// revision returns etcd's current revision.
func (h *harness) revision(ctx context.Context) int64 {
	h.t.Helper()
	resp, err := h.env.Client.Get(ctx, h.keys.Wake())
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.Header.Revision
}

// writesSince returns every write to etcd after revision from, up to the
// current revision: a watch of the whole keyspace replays them, and every
// revision has at least one event.
func (h *harness) writesSince(ctx context.Context, from int64) []*clientv3.Event {
	h.t.Helper()
	to := h.revision(ctx)
	if to == from {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out []*clientv3.Event
	for resp := range h.env.Client.Watch(clientv3.WithRequireLeader(ctx), "\x00", clientv3.WithFromKey(), clientv3.WithRev(from+1)) {
		if err := resp.Err(); err != nil {
			h.t.Fatalf("replaying revisions %d-%d: %v", from+1, to, err)
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision > to {
				return out
			}
			out = append(out, ev)
			if ev.Kv.ModRevision == to {
				return out
			}
		}
	}
	h.t.Fatalf("replaying revisions %d-%d: watch ended (%v) after %d events", from+1, to, ctx.Err(), len(out))
	return nil
}

// taskWrites returns the events that wrote a batch's records or a task in
// any state: the leader's and the workers' work, as opposed to elections,
// registrations and the like.
func (h *harness) taskWrites(evs []*clientv3.Event) []*clientv3.Event {
	k := h.keys
	prefixes := []string{k.Active(), k.Finished(), k.Batches(), k.Cancels(), k.Ready(), k.Delayed(),
		k.Claims(), k.Running(), k.Done(), k.Results(), k.Quarantine("")}
	var out []*clientv3.Event
	for _, ev := range evs {
		for _, p := range prefixes {
			if strings.HasPrefix(string(ev.Kv.Key), p) {
				out = append(out, ev)
				break
			}
		}
	}
	return out
}

// checkSummaryOnce checks a batch's summary exists, counts every host ok
// and was written once, and returns it.
func (h *harness) checkSummaryOnce(ctx context.Context, batch string, hosts int) (modRev int64) {
	h.t.Helper()
	resp, err := h.env.Client.Get(ctx, h.keys.BatchSummary(batch))
	if err != nil {
		h.t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		h.t.Fatalf("batch %s has no summary", batch)
	}
	kv := resp.Kvs[0]
	if kv.Version != 1 {
		h.t.Errorf("summary of %s written %d times, want once: %s", batch, kv.Version, kv.Value)
	}
	var s queue.Summary
	if err := json.Unmarshal(kv.Value, &s); err != nil || s.Total != hosts || s.Counts[queue.StatusOK] != hosts {
		h.t.Errorf("summary of %s: %s (%v), want %d hosts all ok", batch, kv.Value, err, hosts)
	}
	return kv.ModRevision
}

func hasBatch(lines []proctest.LogLine, batch string) bool {
	for _, l := range lines {
		if l.Str("batch_id") == batch {
			return true
		}
	}
	return false
}

// countExact counts the lines whose message is exactly msg.
func countExact(lines []proctest.LogLine, msg string) int {
	n := 0
	for _, l := range lines {
		if l.Str("message") == msg {
			n++
		}
	}
	return n
}

// putCounter counts the puts of each key under a prefix, from a watch.
type putCounter struct {
	mu     sync.Mutex
	counts map[string]int
	grew   chan struct{} // closed and replaced whenever a new key is seen
	err    error
	done   chan struct{}
}

// watchPuts counts every put under prefix from the current revision on,
// until the test ends.
func (h *harness) watchPuts(ctx context.Context, prefix string) *putCounter {
	h.t.Helper()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	pc := &putCounter{counts: map[string]int{}, grew: make(chan struct{}), done: make(chan struct{})}
	wch := h.env.Client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithFilterDelete(),
		clientv3.WithRev(h.revision(ctx)+1))
	go func() {
		defer close(pc.done)
		for resp := range wch {
			if err := resp.Err(); err != nil {
				pc.mu.Lock()
				pc.err = err
				pc.mu.Unlock()
				return
			}
			pc.mu.Lock()
			grew := false
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key)
				if pc.counts[k] == 0 {
					grew = true
				}
				pc.counts[k]++
			}
			if grew {
				close(pc.grew)
				pc.grew = make(chan struct{})
			}
			pc.mu.Unlock()
		}
	}()
	h.t.Cleanup(func() {
		cancel()
		<-pc.done
	})
	return pc
}

// wait blocks until keys distinct keys were put, and returns the counts.
// Every key already seen was counted with all its puts up to the last
// event delivered.
func (pc *putCounter) wait(t *testing.T, keys int) map[string]int {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		pc.mu.Lock()
		n, grew, err := len(pc.counts), pc.grew, pc.err
		pc.mu.Unlock()
		if err != nil {
			t.Fatalf("watch of ready keys: %v", err)
		}
		if n >= keys {
			pc.mu.Lock()
			defer pc.mu.Unlock()
			if n > keys {
				t.Errorf("%d distinct ready keys put, want %d", n, keys)
			}
			return maps.Clone(pc.counts)
		}
		select {
		case <-grew:
		case <-pc.done:
			pc.mu.Lock()
			n = len(pc.counts)
			pc.mu.Unlock()
			if n < keys {
				t.Fatalf("watch of ready keys ended after %d keys, want %d", n, keys)
			}
		case <-deadline.C:
			t.Fatalf("watch saw %d distinct ready keys within 30s, want %d", n, keys)
		}
	}
}

// TestPartitionedLeaderIsFenced: the leader's writes to etcd are held back
// (a one-way partition, through a proxy) while it is sharding a batch, so
// that its shard transactions are on the wire when its session expires.
// The other scheduler takes over and finishes sharding from the lanes'
// counters; when the partition heals, the deposed leader's held
// transactions reach etcd after the takeover and write nothing: every ready
// key is written once. (A frozen leader, as in TestDeposedLeaderIsFenced,
// sees its lease's deadline pass the moment it resumes and steps down
// before sending anything; here its writes are already sent. By then it has
// cancelled them too, so etcd evaluates some and drops others as
// cancelled; those it evaluates fail both the fence and the lane counter's
// compare.)
func TestPartitionedLeaderIsFenced(t *testing.T) {
	h := setup(t)
	const batch, hosts, ttl = "partitioned", 10000, 2 * time.Second
	px := newProxy(t, h.env.Endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	// s1, behind the proxy, campaigns first and leads; no workers, so that
	// every ready key stays and its version counts its writes.
	s1 := h.startEnv("s1", []string{"PATROL_ENDPOINTS=" + px.Addr()}, "scheduler", "--id", "s1", "--session-ttl", ttl.String())
	s1.WaitLog(t, 10*time.Second, "leading", nil)
	s2 := h.start("s2", "scheduler", "--id", "s2", "--session-ttl", ttl.String())
	h.waitKeys(ctx, h.keys.Election(), "s2 to campaign", func(r *clientv3.GetResponse) bool { return r.Count == 2 })

	inv, _ := inventory(t, "p", hosts)
	h.run(30*time.Second, "submit", "-i", inv, "--check", "noop", "--batch-id", batch, "-o", "json")
	h.waitKeys(ctx, h.keys.BatchProgress(batch), "sharding to start", func(r *clientv3.GetResponse) bool { return r.Count > 0 })
	px.Hold()
	held := time.Now()
	h.waitLeader(ctx, "s2", held.Add(ttl+5*time.Second))
	t.Logf("s1 partitioned with %d of %d hosts sharded; s2 leads %s later", h.progress(ctx, batch), hosts, time.Since(held).Round(time.Millisecond))
	s2.WaitLog(t, 20*time.Second, "batch sharded", func(l proctest.LogLine) bool { return l.Str("batch_id") == batch })
	if n := h.progress(ctx, batch); n != hosts {
		t.Fatalf("s2 finished sharding with the lanes at %d hosts, want %d", n, hosts)
	}

	rev := h.revision(ctx)
	px.Release()
	released := time.Now()
	l := s1.WaitLog(t, 15*time.Second, "stopped leading", nil)
	// s1 campaigns again once it has stepped down: its new election key
	// travels on the connection behind its held transactions.
	h.waitKeys(ctx, h.keys.Election(), "s1 to campaign again", func(r *clientv3.GetResponse) bool { return r.Count == 2 })
	t.Logf("partition healed; s1 had logged %q (error %q) and campaigns again %s later",
		l.Str("message"), l.Str("error"), time.Since(released).Round(time.Millisecond))
	// s2 is done with the batch and there are no workers: whatever batch or
	// task write etcd saw since the heal would be s1's.
	for _, ev := range h.taskWrites(h.writesSince(ctx, rev)) {
		t.Errorf("%s %s at revision %d, after the partition healed: %q", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, ev.Kv.Value)
	}

	resp, err := h.env.Client.Get(ctx, h.keys.Ready(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != hosts {
		t.Errorf("%d ready keys, want %d", resp.Count, hosts)
	}
	twice := 0
	for _, kv := range resp.Kvs {
		if kv.Version != 1 && twice < 10 {
			twice++
			t.Errorf("ready key %s written %d times, want once", kv.Key, kv.Version)
		}
	}
	if n := h.progress(ctx, batch); n != hosts {
		t.Errorf("lanes' progress adds up to %d, want %d", n, hosts)
	}
}
