package proctest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proc is one patrol child process. Its stderr (JSON log lines) is kept
// line by line so that a test can wait for a line; its stdout is kept whole.
type Proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // cmd.Wait's result, set before done is closed

	stdout syncBuffer

	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced whenever a line arrives
}

// Start runs `bin --log-format json ARGS...` with env (KEY=VALUE) added to
// the test process's environment less its PATROL_* variables, after
// PATROL_METRICS_ADDR=127.0.0.1:0; a variable in env overrides. name is
// what the process is called in failures. The process is killed and reaped
// when t ends, and its last log lines are printed if t failed.
func Start(t testing.TB, bin, name string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--log-format", "json"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATROL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATROL_METRICS_ADDR=127.0.0.1:0")
	cmd.Env = append(cmd.Env, env...) // exec keeps the last value of a duplicated key
	p := &Proc{name: name, cmd: cmd, done: make(chan struct{}), grew: make(chan struct{})}
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
		p.Stop(t)
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

// read collects stderr lines until EOF, then reaps the process.
func (p *Proc) read(r io.Reader) {
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

// PID is the process's ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Stdout returns what the process has written to stdout so far.
func (p *Proc) Stdout() []byte { return p.stdout.Bytes() }

// Signal sends sig to the process, and fails t if it cannot.
func (p *Proc) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s (pid %d): %v", sig, p.name, p.PID(), err)
	}
}

// Wait blocks until the process has exited and been reaped, and returns
// cmd.Wait's error (ExitCode reads it). It fails t after timeout.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s (pid %d) still running after %s", p.name, p.PID(), timeout)
		return nil
	}
}

// Stop kills the process (SIGKILL, which also ends a stopped one) and reaps
// it; t's cleanup does so too. Calling it again, or after the process has
// exited, is harmless.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Kill() // fails harmlessly once the process has been reaped
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s (pid %d) not reaped 10s after SIGKILL", p.name, p.PID())
	}
}

// ExitCode is a reaped process's exit code, from Wait's error: 0 for nil,
// -1 if it died of a signal.
func ExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// LogLine is one decoded JSON log line: "level", "message" and the
// fields the line was logged with (zerolog writes durations in
// milliseconds, numbers as float64).
type LogLine map[string]any

// Str returns the string field k, or "" if there is none.
func (l LogLine) Str(k string) string { s, _ := l[k].(string); return s }

// WaitLog blocks until the process has logged a JSON line whose message
// contains msg and that match accepts (nil accepts any), and returns it.
// It reads the lines as they arrive from the pipe, from the first; it fails
// t after timeout or if the process exits first.
func (p *Proc) WaitLog(t testing.TB, timeout time.Duration, msg string, match func(LogLine) bool) LogLine {
	t.Helper()
	l, err := p.AwaitLog(timeout, msg, match)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ErrExited is what AwaitLog returns (wrapped) when the process exits
// before logging the line.
var ErrExited = errors.New("proctest: process exited")

// AwaitLog is WaitLog for a caller that handles the failure itself (a
// process that may exit, say, because its port was taken): it returns an
// error wrapping ErrExited if the process exits first, or another error
// after timeout.
func (p *Proc) AwaitLog(timeout time.Duration, msg string, match func(LogLine) bool) (LogLine, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	next := 0
	for {
		p.mu.Lock()
		lines, grew := p.lines[next:], p.grew
		next = len(p.lines)
		p.mu.Unlock()
		for _, s := range lines {
			var l LogLine
			if json.Unmarshal([]byte(s), &l) != nil {
				continue
			}
			if strings.Contains(l.Str("message"), msg) && (match == nil || match(l)) {
				return l, nil
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
				return nil, fmt.Errorf("%s exited (%v) before logging %q: %w", p.name, p.err, msg, ErrExited)
			}
		case <-deadline.C:
			return nil, fmt.Errorf("%s logged no %q within %s", p.name, msg, timeout)
		}
	}
}

// Exited reports whether the process has exited and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Logs returns the decoded lines logged so far whose message contains msg.
func (p *Proc) Logs(msg string) []LogLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []LogLine
	for _, s := range p.lines {
		var l LogLine
		if json.Unmarshal([]byte(s), &l) == nil && strings.Contains(l.Str("message"), msg) {
			out = append(out, l)
		}
	}
	return out
}

// Stderr returns every line the process has written to stderr so far,
// JSON or not (a command's error, "patrol: ...", is plain text).
func (p *Proc) Stderr() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// dump logs the tail of the process's stderr, for a failed test.
func (p *Proc) dump(t testing.TB) {
	exit := "still running"
	select {
	case <-p.done:
		exit = fmt.Sprintf("exit %v", p.err)
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := p.lines[max(0, len(p.lines)-40):]
	t.Logf("--- %s (pid %d, %s): last %d stderr lines\n%s", p.name, p.PID(), exit, len(lines), strings.Join(lines, "\n"))
}

// PeakRSS reads the running process's peak resident set size (VmHWM), in
// bytes, from /proc: Linux only.
func (p *Proc) PeakRSS() (int64, error) { return PeakRSSOf(p.PID()) }

// PeakRSSOf is PeakRSS of any running process. For a child of the test,
// it is the figure to use, not wait4's: that one counts the test
// process's own memory, which a child exec'd from a large test inherits.
func PeakRSSOf(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
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
