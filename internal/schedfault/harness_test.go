//go:build linux

package schedfault

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

// sessionTTL is every scheduler's --session-ttl: how long a killed or
// frozen leader keeps its election key.
const sessionTTL = 2 * time.Second

// harness is one test's collaborators: its view of the shared etcd, a
// queue on it for reading what the processes wrote, and the schedulers
// it started, by ID.
type harness struct {
	t       *testing.T
	env     *etcdtest.Env
	keys    queue.Keys
	q       *queue.Queue
	bin     string
	scheds  map[string]*proctest.Proc
	stopped map[string]bool // schedulers frozen with SIGSTOP now
	started int             // schedulers started so far: the next ID
}

func setup(t *testing.T) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the patrol binary as processes; skipped with -short")
	}
	env := etcdtest.New(t)
	return &harness{t: t, env: env, keys: queue.NewKeys(env.Prefix), q: queue.New(env.Client, env.Prefix),
		bin: proctest.Binary(t), scheds: map[string]*proctest.Proc{}, stopped: map[string]bool{}}
}

// start runs `patrol ARGS...` against the test's etcd and prefix; it is
// killed and reaped when the test ends.
func (h *harness) start(name string, args ...string) *proctest.Proc {
	h.t.Helper()
	env := []string{"PATROL_ENDPOINTS=" + h.env.Endpoint, "PATROL_PREFIX=" + h.env.Prefix}
	return proctest.Start(h.t, h.bin, name, env, args...)
}

// run runs a patrol command that must succeed and returns its stdout.
func (h *harness) run(args ...string) []byte {
	h.t.Helper()
	p := h.start(args[0], args...)
	if err := p.Wait(h.t, time.Minute); err != nil {
		h.t.Fatalf("patrol %s: %v\n%s", strings.Join(args, " "), err, strings.Join(p.Stderr(), "\n"))
	}
	return p.Stdout()
}

// startScheduler starts a scheduler with a fresh ID (s1, s2, ...): a
// restarted one is a new candidate, never confused with the one killed.
func (h *harness) startScheduler() *proctest.Proc {
	h.t.Helper()
	h.started++
	id := fmt.Sprintf("s%d", h.started)
	p := h.start(id, "scheduler", "--id", id, "--session-ttl", sessionTTL.String())
	h.scheds[id] = p
	return p
}

// startWorker starts a worker and waits until it claims.
func (h *harness) startWorker(id string) *proctest.Proc {
	h.t.Helper()
	w := h.start(id, "worker", "--id", id, "--concurrency", "16")
	w.WaitLog(h.t, 30*time.Second, "worker started", nil)
	return w
}

// leader waits until the oldest election key (the one concurrency.Election
// obeys) names a scheduler that runs and is not frozen, and returns it.
// After a kill or a SIGSTOP that is the successor, once the faulted
// leader's key has expired with its session.
func (h *harness) leader(ctx context.Context) (string, *proctest.Proc) {
	h.t.Helper()
	var id string
	_, err := etcdtest.Wait(ctx, h.env.Client, h.keys.Election()+"/", func(r *clientv3.GetResponse) bool {
		if len(r.Kvs) == 0 {
			return false
		}
		var info queue.LeaderInfo
		if err := json.Unmarshal(r.Kvs[0].Value, &info); err != nil {
			return false
		}
		p := h.scheds[info.ID]
		if p == nil || p.Exited() || h.stopped[info.ID] {
			return false
		}
		id = info.ID
		return true
	})
	if err != nil {
		h.t.Fatalf("waiting for a live leading scheduler: %v", err)
	}
	return id, h.scheds[id]
}

// runs is how many runs the schedule's run index lists.
func (h *harness) runs(ctx context.Context, name string) int {
	h.t.Helper()
	resp, err := h.env.Client.Get(ctx, h.keys.ScheduleRuns(name), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		h.t.Fatalf("count the runs of %s: %v", name, err)
	}
	return int(resp.Count)
}

// awaitRuns waits (on a watch) until the schedule's run index lists at
// least n runs.
func (h *harness) awaitRuns(ctx context.Context, name string, n int) {
	h.t.Helper()
	if _, err := etcdtest.Wait(ctx, h.env.Client, h.keys.ScheduleRuns(name), func(r *clientv3.GetResponse) bool {
		return len(r.Kvs) >= n
	}); err != nil {
		h.t.Fatalf("waiting for %d runs of %s: %v", n, name, err)
	}
}

// awaitState waits (on a watch) until the schedule's state satisfies cond.
func (h *harness) awaitState(ctx context.Context, name, what string, cond func(queue.ScheduleState) bool) {
	h.t.Helper()
	_, err := etcdtest.Wait(ctx, h.env.Client, h.keys.ScheduleState(name), func(r *clientv3.GetResponse) bool {
		for _, kv := range r.Kvs {
			var st queue.ScheduleState
			if string(kv.Key) == h.keys.ScheduleState(name) && json.Unmarshal(kv.Value, &st) == nil && cond(st) {
				return true
			}
		}
		return false
	})
	if err != nil {
		h.t.Fatalf("waiting for schedule %s's state: %s: %v", name, what, err)
	}
}

// inventory writes n hosts named like name-001.test to a file.
func inventory(t *testing.T, name string, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%s-%03d.test\n", name, i)
	}
	path := filepath.Join(t.TempDir(), name+".txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o666); err != nil {
		t.Fatal(err)
	}
	return path
}

// scheduleBatches lists the batches created for a schedule, from the
// batch indexes (active and finished), not from the schedule's run index.
func (h *harness) scheduleBatches(ctx context.Context, name string) []queue.BatchSpec {
	h.t.Helper()
	all, err := h.q.Batches(ctx, 0)
	if err != nil {
		h.t.Fatalf("list batches: %v", err)
	}
	var out []queue.BatchSpec
	for _, b := range all {
		if b.Spec.Schedule == name {
			out = append(out, b.Spec)
		}
	}
	return out
}
