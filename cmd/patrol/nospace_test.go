package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/queue"
)

// TestRecoverFromNoSpace walks the runbook's NOSPACE procedure end to end
// on a real etcd with a 16 MiB quota: a batch is running when other data
// fills etcd and its alarm goes off. A submit is refused with the remedy
// and writes nothing; status says the batch is stalled; cancel stops the
// batch with deletes only; delete removes it whole; `space --reclaim`
// compacts, defragments and disarms; the next batch runs to the end.
func TestRecoverFromNoSpace(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 16 MiB etcd; skipped with -short")
	}
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", NoFsync: true,
		QuotaBackendBytes: 16 << 20, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second,
		Logger: logging.Zap(zerolog.Nop(), zapcore.ErrorLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const prefix = "/nospace"
	q := queue.New(cli, prefix)
	stop := startRoles(t, ctx, q, 1)
	defer stop()

	t0 := time.Now()
	patrol := func(args ...string) (stdout, stderr string, err error) {
		defer func() { t.Logf("%6.2fs patrol %s", time.Since(t0).Seconds(), strings.Join(args, " ")) }()
		var o, e bytes.Buffer
		err = Run(ctx, append([]string{"patrol", "--endpoints", srv.Endpoint(), "--prefix", prefix}, args...), &o, &e)
		return o.String(), e.String(), err
	}
	dir := t.TempDir()
	inventory := func(name string, n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s-%03d ansible_host=127.0.0.1\n", name, i)
		}
		path := filepath.Join(dir, name+".txt")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// A batch is running: its checks take an hour, so most of it waits.
	if out, _, err := patrol("submit", "-i", inventory("running", 300), "--check", "noop", "--param", "sleep=1h", "--batch-id", "running"); err != nil {
		t.Fatalf("submit running: %v %s", err, out)
	}
	// Other data fills etcd until it raises NOSPACE.
	val := strings.Repeat("x", 512<<10)
	for i := 0; ; i++ {
		_, err := cli.Put(ctx, fmt.Sprintf("/other-app/%d", i), val)
		if queue.IsNoSpace(err) {
			break
		}
		if err != nil || i > 100 {
			t.Fatalf("filling etcd: put %d: %v", i, err)
		}
	}
	if sp, err := q.Space(ctx); err != nil || !sp.NoSpace {
		t.Fatalf("space %+v, %v: want the NOSPACE alarm", sp, err)
	}

	// A submit is refused up front, with what to do, and writes nothing.
	_, _, err = patrol("submit", "-i", inventory("refused", 5), "--check", "noop", "--batch-id", "refused")
	if err == nil || !strings.Contains(err.Error(), "etcd is out of space (NOSPACE alarm") || !strings.Contains(err.Error(), "patrol space --reclaim") ||
		!strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("submit under NOSPACE: %v", err)
	}
	if resp, err := cli.Get(ctx, q.Keys().Batch("refused"), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("the refused submit wrote %v keys (err %v)", resp.Count, err)
	}
	// status says why nothing moves.
	out, errOut, err := patrol("status", "running")
	if err != nil || !strings.Contains(out, "stalled: etcd is out of space") || !strings.Contains(errOut, "NOSPACE alarm") {
		t.Fatalf("status under NOSPACE: %v\n%s\n%s", err, out, errOut)
	}
	// cancel stops the batch with deletes only.
	out, _, err = patrol("cancel", "running")
	if err != nil || !strings.Contains(out, "queued tasks instead") {
		t.Fatalf("cancel under NOSPACE: %v %s", err, out)
	}
	if resp, err := cli.Get(ctx, q.Keys().Ready(), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("%v ready keys left after cancel (err %v)", resp.Count, err)
	}
	// Free space: the other application's data goes, and the stalled
	// batch is deleted whole.
	if _, err := cli.Delete(ctx, "/other-app/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete the other data under NOSPACE: %v", err)
	}
	if out, _, err := patrol("delete", "--force", "running"); err != nil || !strings.Contains(out, "batch running deleted") {
		t.Fatalf("delete under NOSPACE: %v %s", err, out)
	}
	out, _, err = patrol("space", "--reclaim")
	if err != nil || !strings.Contains(out, "disarmed NOSPACE") {
		t.Fatalf("space --reclaim: %v\n%s", err, out)
	}
	if sp, err := q.Space(ctx); err != nil || sp.NoSpace {
		t.Fatalf("space after reclaim %+v, %v: want no alarm", sp, err)
	}
	// The deleted batch's aborted checks commit (once etcd takes writes
	// again) and their groups end; what they committed goes with a second
	// delete.
	etcdtest.WaitFor(t, cli, q.Keys().Claims(), time.Minute, "the aborted checks' groups to end", func(n int) bool { return n == 0 })
	if out, _, err := patrol("delete", "running"); err != nil && !strings.Contains(err.Error(), "no batch running") {
		t.Fatalf("second delete: %v %s", err, out)
	}
	if resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly()); err == nil {
		for _, kv := range resp.Kvs {
			if strings.Contains(string(kv.Key), "/running/") && strings.Contains(string(kv.Key), "results") {
				t.Fatalf("%s left after deleting the batch twice", kv.Key)
			}
		}
	}
	// The next batch runs.
	out, errOut, err = patrol("submit", "-i", inventory("next", 20), "--check", "noop", "--batch-id", "next", "--wait")
	if err != nil {
		t.Fatalf("the next batch: %v\n%s\n%s", err, out, errOut)
	}
	rows, _, err := q.Results(ctx, "next")
	if err != nil || len(rows) != 20 {
		t.Fatalf("next: %d rows, %v", len(rows), err)
	}
	for _, r := range rows {
		if r.Status != queue.StatusOK {
			t.Fatalf("next: %+v", r)
		}
	}
}
