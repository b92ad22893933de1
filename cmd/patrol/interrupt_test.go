package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/queue"
)

// TestSubmitWaitInterrupted: `submit --wait` cut short once the batch is
// stored (what Ctrl-C does, through main's signal.NotifyContext) stops the
// waiting, not the batch: exit 130, a message saying how to follow the
// batch, and the batch still active for a scheduler to run.
func TestSubmitWaitInterrupted(t *testing.T) {
	env := etcdtest.New(t)
	path := filepath.Join(t.TempDir(), "hosts.txt")
	if err := os.WriteFile(path, []byte("web1:22\n"), 0o666); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := newNotifyWriter()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"patrol", "--endpoints", env.Endpoint, "--prefix", env.Prefix,
			"submit", "-i", path, "--check", "tcp", "--batch-id", "int-1", "--wait"}, stdout, &stderr)
	}()
	// No scheduler runs, so once submit has printed the ID it is waiting.
	select {
	case <-stdout.written:
	case err := <-done:
		t.Fatalf("submit returned before printing the batch ID: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("submit printed nothing")
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("submit --wait did not return after its context was cancelled")
	}
	if got := exitCode(err); got != exitInterrupted {
		t.Errorf("exit code = %d (%v), want %d", got, err, exitInterrupted)
	}
	if want := "interrupted; batch int-1 keeps running: follow it with `patrol status int-1`, or re-attach with `patrol watch int-1`"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	if got := strings.TrimSpace(stdout.String()); got != "int-1" {
		t.Errorf("stdout = %q, want the batch ID", got)
	}
	if got := etcdtest.Keys(t, env.Client, queue.NewKeys(env.Prefix).ActiveBatch("int-1")); len(got) != 1 {
		t.Errorf("batch not active after the interrupt: %v", got)
	}
}

// notifyWriter collects what is written to it and closes written on the
// first write.
type notifyWriter struct {
	written chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

func newNotifyWriter() *notifyWriter { return &notifyWriter{written: make(chan struct{})} }

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.once.Do(func() { close(w.written) })
	return w.buf.Write(p)
}

func (w *notifyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
