package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/queue"
	"github.com/patrol-dev/patrol/scheduler"
	"github.com/patrol-dev/patrol/worker"
)

// TestOneResultPerHostAtScale submits 1,000 loopback hosts, half listening
// and half refusing, through the CLI against an in-process scheduler and two
// workers, and checks that every host gets exactly one result, the right one,
// from its first attempt.
func TestOneResultPerHostAtScale(t *testing.T) {
	const open, closed = 500, 500
	env := etcdtest.New(t)

	want := map[string]queue.Status{} // host name -> the status its check must give
	var inv strings.Builder
	add := func(tg target, st queue.Status) {
		t.Cleanup(tg.Close)
		name := "127.0.0.1:" + strconv.Itoa(tg.Port)
		want[name] = st
		fmt.Fprintln(&inv, name)
	}
	for range open {
		tg, err := openTCP()
		if err != nil {
			t.Fatal(err)
		}
		add(tg, queue.StatusOK)
	}
	for range closed {
		tg, err := closedTCP()
		if err != nil {
			t.Fatal(err)
		}
		add(tg, queue.StatusFail)
	}
	path := filepath.Join(t.TempDir(), "hosts.txt")
	if err := os.WriteFile(path, []byte(inv.String()), 0o666); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stopRoles := startRoles(t, ctx, queue.New(env.Client, env.Prefix), 2)
	defer stopRoles()

	patrol := func(args ...string) (stdout string, code int) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := Run(ctx, append([]string{"patrol", "--endpoints", env.Endpoint, "--prefix", env.Prefix}, args...), &out, &errOut)
		if err != nil {
			code = exitCode(err)
		}
		t.Logf("patrol %s: exit %d\nstderr:\n%s", strings.Join(args, " "), code, errOut.String())
		return out.String(), code
	}

	start := time.Now()
	out, code := patrol("-o", "json", "submit", "-i", path, "--check", "tcp", "--param", "timeout=10s",
		"--batch-id", "scale-1", "--wait")
	t.Logf("submit --wait of %d hosts took %s", len(want), time.Since(start).Round(time.Millisecond))
	if code != exitFailedHosts {
		t.Fatalf("submit --wait exit code = %d, want %d (some hosts fail)", code, exitFailedHosts)
	}
	var sub struct {
		BatchID string `json:"batch_id"`
		Hosts   int    `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(out), &sub); err != nil || sub.BatchID != "scale-1" || sub.Hosts != len(want) {
		t.Fatalf("submit printed %q (%v), want batch_id scale-1 and %d hosts", out, err, len(want))
	}

	out, code = patrol("-o", "json", "results", "scale-1")
	if code != exitOK {
		t.Fatalf("results exit code = %d", code)
	}
	var rows []queue.HostResult
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("results -o json: %v", err)
	}
	if len(rows) != len(want) {
		t.Errorf("results has %d rows, want one per host: %d", len(rows), len(want))
	}
	seen := map[string]bool{}
	for _, r := range rows {
		st, ok := want[r.Host]
		switch {
		case !ok:
			t.Errorf("row for unknown host %q", r.Host)
		case seen[r.Host]:
			t.Errorf("host %s has more than one row", r.Host)
		case r.Status != st || r.Attempts != 1 || r.Worker == "":
			t.Errorf("host %s: status %s, attempts %d, worker %q (%s); want %s, 1 attempt, a worker",
				r.Host, r.Status, r.Attempts, r.Worker, r.Message, st)
		}
		seen[r.Host] = true
	}
	for h := range want {
		if !seen[h] {
			t.Errorf("host %s has no row", h)
		}
	}
}

// startRoles runs a scheduler and n workers on q until the returned stop is
// called, which waits for them to finish.
func startRoles(t *testing.T, ctx context.Context, q *queue.Queue, n int) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	s, err := scheduler.New(q, scheduler.Config{ID: "scale-scheduler", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { s.Run(ctx) })
	for i := range n {
		w, err := worker.New(q, worker.Config{ID: fmt.Sprintf("scale-worker-%d", i+1), Log: zerolog.Nop(), DrainTimeout: time.Nanosecond})
		if err != nil {
			stop()
			t.Fatal(err)
		}
		wg.Go(func() { w.Run(ctx) })
	}
	return stop
}
