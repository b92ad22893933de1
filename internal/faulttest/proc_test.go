//go:build linux

package faulttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/queue"
)

var (
	binDir    string // set by TestMain, removed after the tests
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// patrolBinary builds cmd/patrol once per test binary and returns its path.
func patrolBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the patrol binary; skipped with -short")
	}
	buildOnce.Do(func() {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(gomod)))
		bin := filepath.Join(binDir, "patrol")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/patrol")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/patrol: %w\n%s", err, out)
			return
		}
		binPath = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

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
	bin := patrolBinary(t)
	env := etcdtest.New(t)
	return &harness{t: t, env: env, keys: queue.NewKeys(env.Prefix), bin: bin}
}

// proc is one patrol child process. Its stderr (JSON log lines) is kept
// line by line so that tests can wait for a line; its stdout is kept whole.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // cmd.Wait's result, set before done is closed

	stdout syncBuffer

	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced whenever a line arrives
}

// start runs `patrol --log-format json ARGS...` against the test's etcd
// and prefix. The process is killed and reaped when the test ends.
func (h *harness) start(name string, args ...string) *proc {
	h.t.Helper()
	return h.startEnv(name, nil, args...)
}

// startEnv is start with extra environment variables (KEY=VALUE), which
// override the defaults.
func (h *harness) startEnv(name string, env []string, args ...string) *proc {
	t := h.t
	t.Helper()
	cmd := exec.Command(h.bin, append([]string{"--log-format", "json"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATROL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATROL_ENDPOINTS="+h.env.Endpoint, "PATROL_PREFIX="+h.env.Prefix, "PATROL_METRICS_ADDR=127.0.0.1:0")
	cmd.Env = append(cmd.Env, env...) // exec keeps the last value of a duplicated key
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), grew: make(chan struct{})}
	cmd.Stdout = &p.stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go p.read(stderr)
	t.Cleanup(func() {
		p.cmd.Process.Kill() // also ends a stopped process; harmless once it has exited
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) not reaped 10s after SIGKILL", name, p.pid())
		}
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

// read collects stderr lines until EOF, then reaps the process.
func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.grew)
		p.grew = make(chan struct{})
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r) // after a scan error, still drain so the child never blocks on stderr
	p.err = p.cmd.Wait()
	close(p.done)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(p.pid(), sig); err != nil {
		t.Fatalf("kill -%d %s (pid %d): %v", sig, p.name, p.pid(), err)
	}
}

// wait blocks until the process has exited and been reaped, and returns
// cmd.Wait's error.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s (pid %d) still running after %s", p.name, p.pid(), timeout)
		return nil
	}
}

// logLine is one decoded JSON log line.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// waitLog blocks until the process has logged a JSON line whose message
// contains msg and that match accepts (nil accepts any), and returns it.
// It reads the lines as they arrive from the pipe; it fails t after timeout
// or if the process exits first.
func (p *proc) waitLog(t *testing.T, timeout time.Duration, msg string, match func(logLine) bool) logLine {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	next := 0
	for {
		p.mu.Lock()
		lines, grew := p.lines[next:], p.grew
		next = len(p.lines)
		p.mu.Unlock()
		for _, s := range lines {
			var l logLine
			if json.Unmarshal([]byte(s), &l) != nil {
				continue
			}
			if strings.Contains(l.str("message"), msg) && (match == nil || match(l)) {
				return l
			}
		}
		select {
		case <-grew:
		case <-p.done:
			// The last lines may have arrived with the exit.
			p.mu.Lock()
			more := len(p.lines) > next
			p.mu.Unlock()
			if !more {
				t.Fatalf("%s exited (%v) before logging %q", p.name, p.err, msg)
			}
		case <-deadline.C:
			t.Fatalf("%s logged no %q within %s", p.name, msg, timeout)
		}
	}
}

// logs returns the decoded lines logged so far whose message contains msg.
func (p *proc) logs(msg string) []logLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []logLine
	for _, s := range p.lines {
		var l logLine
		if json.Unmarshal([]byte(s), &l) == nil && strings.Contains(l.str("message"), msg) {
			out = append(out, l)
		}
	}
	return out
}

// dump logs the tail of the process's stderr, for a failed test.
func (p *proc) dump(t *testing.T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := p.lines
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("--- %s (pid %d, exit %v): last %d stderr lines\n%s", p.name, p.pid(), p.err, len(lines), strings.Join(lines, "\n"))
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
	if err := p.wait(h.t, timeout); err != nil {
		p.dump(h.t)
		h.t.Fatalf("patrol %s: %v", strings.Join(args, " "), err)
	}
	return p.stdout.Bytes()
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

// exitCode is a reaped process's exit code, or -1 if it died of a signal.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// syncBuffer is a bytes.Buffer safe for the exec copier and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
