//go:build linux

package clusterfault

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

	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

// The deployment every scenario runs: the issue's, on a 2-core machine.
const (
	prefix      = "/patrol-fault"
	sessionTTL  = "5s"
	leaseTTL    = 5 * time.Second
	concurrency = "16"
	maxAttempts = 3
	// attemptTimeout is the batches' --timeout. A host whose commit was
	// lost stays running until the scheduler revokes its claim, this
	// long after the claim plus 5 s; the default minute would make one
	// scenario last over a minute.
	attemptTimeout = "15s"
)

// harness is one scenario's collaborators: its cluster, the patrol
// processes running on it and a timeline of what they commit.
type harness struct {
	t       *testing.T
	c       *cluster
	bin     string
	keys    queue.Keys
	scheds  map[string]*proctest.Proc
	workers map[string]*proctest.Proc
	tl      *timeline
}

// setup starts a cluster, two schedulers and three workers on it, and a
// timeline from the cluster's revision before any of them wrote.
func setup(t *testing.T, cfg clusterConfig) *harness {
	t.Helper()
	h := &harness{t: t, bin: proctest.Binary(t), keys: queue.NewKeys(prefix),
		scheds: map[string]*proctest.Proc{}, workers: map[string]*proctest.Proc{}}
	h.c = startCluster(t, proctest.Build(t, "./internal/clusterfault/etcdmember"), cfg)
	h.tl = follow(t, h.c, h.keys, h.revision()+1)
	for _, id := range []string{"s1", "s2"} {
		h.scheds[id] = h.start(id, "scheduler", "--id", id, "--session-ttl", sessionTTL)
		if id == "s1" {
			h.scheds[id].WaitLog(t, 30*time.Second, "leading", nil)
		}
	}
	for _, id := range []string{"w1", "w2", "w3"} {
		h.workers[id] = h.start(id, "worker", "--id", id, "--concurrency", concurrency, "--lease-ttl", leaseTTL.String())
	}
	for _, w := range h.workers {
		w.WaitLog(t, 30*time.Second, "worker started", nil)
	}
	return h
}

// start runs `patrol ARGS...` against every member of the cluster.
func (h *harness) start(name string, args ...string) *proctest.Proc {
	h.t.Helper()
	env := []string{"PATROL_ENDPOINTS=" + strings.Join(h.c.endpoints(), ","), "PATROL_PREFIX=" + prefix}
	return proctest.Start(h.t, h.bin, name, env, args...)
}

// run runs a patrol command to its end and returns it, exited.
func (h *harness) run(timeout time.Duration, args ...string) *proctest.Proc {
	h.t.Helper()
	p := h.start(args[0], args...)
	p.Wait(h.t, timeout)
	return p
}

// mustRun runs a patrol command that must succeed and returns its stdout.
func (h *harness) mustRun(timeout time.Duration, args ...string) []byte {
	h.t.Helper()
	p := h.start(args[0], args...)
	if err := p.Wait(h.t, timeout); err != nil {
		h.t.Fatalf("patrol %s: %v\n%s", strings.Join(args, " "), err, strings.Join(p.Stderr(), "\n"))
	}
	return p.Stdout()
}

// submit writes an inventory of n hosts and submits a batch of noop
// checks sleeping sleep over it, returning the hosts and when the submit
// began.
func (h *harness) submit(batch string, n int, sleep string) (hosts []string, began time.Time) {
	h.t.Helper()
	path, hosts := inventory(h.t, batch, n)
	began = time.Now()
	h.mustRun(60*time.Second, "submit", "-i", path, "--check", "noop", "--param", "sleep="+sleep,
		"--batch-id", batch, "--timeout", attemptTimeout, "--max-attempts", fmt.Sprint(maxAttempts), "-o", "json")
	return hosts, began
}

// inventory writes n hosts named like batch-00001.test to a file.
func inventory(t *testing.T, batch string, n int) (path string, hosts []string) {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		h := fmt.Sprintf("%s-%05d.test", batch, i)
		hosts = append(hosts, h)
		b.WriteString(h + "\n")
	}
	path = filepath.Join(t.TempDir(), batch+".txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o666); err != nil {
		t.Fatal(err)
	}
	return path, hosts
}

// revision is the cluster's current revision.
func (h *harness) revision() int64 {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.c.cli.Get(ctx, h.keys.Election(), clientv3.WithCountOnly())
	if err != nil {
		h.t.Fatalf("read the cluster's revision: %v", err)
	}
	return resp.Header.Revision
}

// leadingScheduler returns the scheduler holding the oldest election key.
func (h *harness) leadingScheduler(ctx context.Context) (string, *proctest.Proc) {
	h.t.Helper()
	resp, err := h.c.cli.Get(ctx, h.keys.Election(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) == 0 {
		h.t.Fatalf("read the election: %v (%d candidates)", err, len(resp.Kvs))
	}
	var info queue.LeaderInfo
	if err := json.Unmarshal(resp.Kvs[0].Value, &info); err != nil || h.scheds[info.ID] == nil {
		h.t.Fatalf("election key %s = %s: not one of the schedulers", resp.Kvs[0].Key, resp.Kvs[0].Value)
	}
	return info.ID, h.scheds[info.ID]
}

// roles returns every scheduler and worker, by ID.
func (h *harness) roles() map[string]*proctest.Proc {
	out := map[string]*proctest.Proc{}
	for id, p := range h.scheds {
		out[id] = p
	}
	for id, p := range h.workers {
		out[id] = p
	}
	return out
}

// exited names the schedulers and workers no longer running.
func (h *harness) exited() []string {
	var out []string
	for id, p := range h.roles() {
		if p.Exited() {
			out = append(out, id)
		}
	}
	return out
}

// workerMetric sums a metric over the workers still running.
func (h *harness) workerMetric(name string) int {
	h.t.Helper()
	sum := 0.0
	for _, w := range h.workers {
		if !w.Exited() {
			sum += w.Scrape(h.t)[name]
		}
	}
	return int(sum)
}
