//go:build linux

package faulttest

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

// harness is one test's collaborators: its view of etcd, its keys and the
// binary to run.
type harness struct {
	t    *testing.T
	env  *etcdtest.Env
	keys queue.Keys
	bin  string
}

func setup(t *testing.T) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the patrol binary; skipped with -short")
	}
	bin := proctest.Binary(t)
	env := etcdtest.New(t)
	return &harness{t: t, env: env, keys: queue.NewKeys(env.Prefix), bin: bin}
}

// start runs `patrol --log-format json ARGS...` against the test's etcd
// and prefix. The process is killed and reaped when the test ends.
func (h *harness) start(name string, args ...string) *proctest.Proc {
	h.t.Helper()
	return h.startEnv(name, nil, args...)
}

// startEnv is start with extra environment variables (KEY=VALUE), which
// override the defaults.
func (h *harness) startEnv(name string, env []string, args ...string) *proctest.Proc {
	h.t.Helper()
	env = append([]string{"PATROL_ENDPOINTS=" + h.env.Endpoint, "PATROL_PREFIX=" + h.env.Prefix}, env...)
	return proctest.Start(h.t, h.bin, name, env, args...)
}

// run runs a short patrol command to completion and returns its stdout.
func (h *harness) run(timeout time.Duration, args ...string) []byte {
	h.t.Helper()
	return h.runEnv(timeout, nil, args...)
}

// runEnv is run with extra environment variables, as for startEnv.
func (h *harness) runEnv(timeout time.Duration, env []string, args ...string) []byte {
	h.t.Helper()
	p := h.startEnv(args[0], env, args...)
	if err := p.Wait(h.t, timeout); err != nil {
		h.t.Fatalf("patrol %s: %v", strings.Join(args, " "), err) // the cleanup prints its log
	}
	return p.Stdout()
}

// results returns `patrol results BATCH -o json`, by host.
func (h *harness) results(batch string) map[string]queue.HostResult {
	h.t.Helper()
	var rows []queue.HostResult
	out := h.run(30*time.Second, "results", batch, "-o", "json")
	if err := json.Unmarshal(out, &rows); err != nil {
		h.t.Fatalf("patrol results -o json: %v\n%s", err, out)
	}
	byHost := make(map[string]queue.HostResult, len(rows))
	for _, r := range rows {
		if _, dup := byHost[r.Host]; dup {
			h.t.Errorf("host %s has two rows", r.Host)
		}
		byHost[r.Host] = r
	}
	return byHost
}

// storedResults reads the batch's result keys directly, by task ID, and
// checks that each was written exactly once (Version 1).
func (h *harness) storedResults(batch string) map[string]queue.Result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prefix := h.keys.BatchResults(batch)
	resp, err := h.env.Client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		h.t.Fatal(err)
	}
	out := make(map[string]queue.Result, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r queue.Result
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			h.t.Errorf("%s: %v", kv.Key, err)
			continue
		}
		if kv.Version != 1 {
			h.t.Errorf("%s written %d times (version %d), want once: %s", kv.Key, kv.Version, kv.Version, kv.Value)
		}
		out[strings.TrimPrefix(string(kv.Key), prefix)] = r
	}
	return out
}

// waitKeys blocks until cond accepts the keys under prefix, re-read on
// every change (a watch), or fails t when ctx ends.
func (h *harness) waitKeys(ctx context.Context, prefix, what string, cond func(*clientv3.GetResponse) bool) *clientv3.GetResponse {
	h.t.Helper()
	resp, err := etcdtest.Wait(ctx, h.env.Client, prefix, cond)
	if err != nil {
		h.t.Fatalf("waiting for %s: %v", what, err)
	}
	return resp
}

// inventory writes n hosts named like prefix-0001.test to a file.
func inventory(t *testing.T, prefix string, n int) (path string, hosts []string) {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		h := fmt.Sprintf("%s-%04d.test", prefix, i)
		hosts = append(hosts, h)
		b.WriteString(h + "\n")
	}
	path = filepath.Join(t.TempDir(), "hosts.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o666); err != nil {
		t.Fatal(err)
	}
	return path, hosts
}

// unfinished returns the groups worker holds a running record for and the
// IDs of their tasks not yet finished, read at one revision.
func (h *harness) unfinished(ctx context.Context, worker string) (groups []string, tasks map[string]bool) {
	h.t.Helper()
	cli := h.env.Client
	run, err := cli.Get(ctx, h.keys.Running(), clientv3.WithPrefix())
	if err != nil {
		h.t.Fatal(err)
	}
	done, err := cli.Get(ctx, h.keys.Done(), clientv3.WithPrefix(), clientv3.WithRev(run.Header.Revision))
	if err != nil {
		h.t.Fatal(err)
	}
	finished := map[string]map[int]bool{}
	for _, kv := range done.Kvs {
		g, err := h.keys.ParseGroup(string(kv.Key))
		if err != nil {
			continue
		}
		finished[g] = map[int]bool{}
		for _, f := range strings.Split(string(kv.Value), ",") {
			var i int
			if _, err := fmt.Sscan(f, &i); err == nil {
				finished[g][i] = true
			}
		}
	}
	tasks = map[string]bool{}
	for _, kv := range run.Kvs {
		var r queue.Running
		g, err := h.keys.ParseGroup(string(kv.Key))
		if err != nil || json.Unmarshal(kv.Value, &r) != nil || r.Worker != worker {
			continue
		}
		groups = append(groups, g)
		for i, task := range r.Tasks {
			if !finished[g][i] {
				tasks[task.ID] = true
			}
		}
	}
	return groups, tasks
}

// claimsOf returns the groups whose claim names worker, in a claims listing.
func claimsOf(resp *clientv3.GetResponse, worker string) []string {
	var out []string
	for _, kv := range resp.Kvs {
		var c queue.Claim
		if json.Unmarshal(kv.Value, &c) == nil && c.Worker == worker {
			out = append(out, string(kv.Key))
		}
	}
	return out
}
