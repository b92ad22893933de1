package proctest_test

import (
	"bytes"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/proctest"
)

// TestMain starts the shared embedded etcd, runs the tests, checks for
// leaked goroutines (etcdtest) and removes the built binary (proctest).
func TestMain(m *testing.M) { os.Exit(proctest.Wrap(etcdtest.Wrap(m)).Run()) }

func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the patrol binary; skipped with -short")
	}
	return proctest.Binary(t)
}

// TestVersion: a command that exits by itself, its stdout and exit code.
func TestVersion(t *testing.T) {
	p := proctest.Start(t, binary(t), "version", nil, "--version")
	if err := p.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("patrol --version: %v (exit %d)", err, proctest.ExitCode(err))
	}
	if out := p.Stdout(); !bytes.HasPrefix(out, []byte("patrol version ")) {
		t.Errorf("stdout %q, want `patrol version ...`", out)
	}
}

// TestExitCode: a command that fails exits 1, and the environment the
// caller passes reaches it.
func TestExitCode(t *testing.T) {
	env := etcdtest.New(t)
	p := proctest.Start(t, binary(t), "leader", []string{"PATROL_ENDPOINTS=" + env.Endpoint, "PATROL_PREFIX=" + env.Prefix}, "leader")
	if err := p.Wait(t, 30*time.Second); proctest.ExitCode(err) != 1 {
		t.Fatalf("patrol leader with no scheduler: %v (exit %d), want exit 1", err, proctest.ExitCode(err))
	}
}

// TestRole: a long-running role, waited on through its log, scraped, and
// stopped by a signal. Two run side by side: their metrics ports differ.
func TestRole(t *testing.T) {
	bin := binary(t)
	env := etcdtest.New(t)
	vars := []string{"PATROL_ENDPOINTS=" + env.Endpoint, "PATROL_PREFIX=" + env.Prefix}
	s1 := proctest.Start(t, bin, "s1", vars, "scheduler", "--id", "s1")
	s1.WaitLog(t, 10*time.Second, "leading", func(l proctest.LogLine) bool { return l.Str("scheduler_id") == "s1" })
	s2 := proctest.Start(t, bin, "s2", vars, "scheduler", "--id", "s2")

	a1, a2 := s1.MetricsAddr(t), s2.MetricsAddr(t)
	for _, a := range []string{a1, a2} {
		if host, port, err := net.SplitHostPort(a); err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("metrics on %q, want 127.0.0.1 and the port the kernel chose", a)
		}
	}
	if a1 == a2 {
		t.Errorf("both schedulers serve metrics on %s", a1)
	}
	if _, ok := s2.Scrape(t)["patrol_scheduler_leader"]; !ok {
		t.Error("s2's /metrics has no patrol_scheduler_leader")
	}
	if runtime.GOOS == "linux" {
		if rss, err := s1.PeakRSS(); err != nil || rss <= 0 {
			t.Errorf("PeakRSS = %d, %v", rss, err)
		}
	}

	s1.Signal(t, syscall.SIGTERM)
	if err := s1.Wait(t, 15*time.Second); err != nil {
		t.Fatalf("s1 after SIGTERM: %v (exit %d), want exit 0", err, proctest.ExitCode(err))
	}
	if n := len(s1.Logs("stopped leading")); n != 1 {
		t.Errorf("s1 logged %q %d times, want once", "stopped leading", n)
	}
	s2.WaitLog(t, 15*time.Second, "leading", func(l proctest.LogLine) bool { return !strings.Contains(l.Str("message"), "stopped") })

	s2.Stop(t)
	if err := s2.Wait(t, time.Second); proctest.ExitCode(err) != -1 {
		t.Errorf("s2 after Stop: %v, want killed by a signal", err)
	}
	s2.Stop(t) // harmless twice
}
