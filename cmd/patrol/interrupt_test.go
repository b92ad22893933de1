package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/queue"
)

// TestSubmitWaitInterruptedExits130 checks the exit status the interrupt
// script cannot see: `submit --wait` cut short exits 130, and the batch it
// submitted stays active.
func TestSubmitWaitInterruptedExits130(t *testing.T) {
	env := etcdtest.New(t)
	path := filepath.Join(t.TempDir(), "hosts.txt")
	if err := os.WriteFile(path, []byte("web1:22\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	keys := queue.NewKeys(env.Prefix)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"patrol", "--endpoints", env.Endpoint, "--prefix", env.Prefix,
			"submit", "-i", path, "--check", "tcp", "--batch-id", "int-1", "--wait"}, &stdout, &stderr)
	}()
	// No scheduler runs: once the spec is in etcd, submit is waiting.
	etcdtest.WaitFor(t, env.Client, keys.BatchSpec("int-1"), 30*time.Second, "the batch spec", func(n int) bool { return n == 1 })
	cancel() // what Ctrl-C does, through main's signal.NotifyContext
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("submit --wait did not return after its context was cancelled")
	}
	if got := exitCode(err); got != exitInterrupted {
		t.Errorf("exit code = %d (%v), want %d", got, err, exitInterrupted)
	}
	if want := "interrupted; batch int-1 keeps running: follow it with `patrol status int-1`"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	if got := strings.TrimSpace(stdout.String()); got != "int-1" {
		t.Errorf("stdout = %q, want the batch ID", got)
	}
	if got := etcdtest.Keys(t, env.Client, keys.ActiveBatch("int-1")); len(got) != 1 {
		t.Errorf("batch not active after the interrupt: %v", got)
	}
}
