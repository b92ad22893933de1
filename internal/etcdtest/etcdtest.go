// Package etcdtest gives tests a real etcd: one embedded member per test
// binary (started on port 0 by Main), a fresh client and key prefix per test,
// and a goroutine-leak check after the package's tests have run.
//
// Every package with tests that touch etcd has:
//
//	func TestMain(m *testing.M) { etcdtest.Main(m) }
package etcdtest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/logging"
)

var (
	endpoint string
	seq      atomic.Int64
)

// Main starts the shared member, runs the tests, stops the member and fails
// the run if any goroutine is left behind.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "patrol-etcdtest-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := etcdserver.Start(etcdserver.Config{
		DataDir: dir,
		NoFsync: true,
		// The member logs errors while it shuts down; tests assert on
		// behaviour, not on etcd's logs.
		Log: zerolog.Nop(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest:", err)
		return 1
	}
	endpoint = srv.Endpoint()
	code := m.Run()
	srv.Close()
	if code != 0 {
		return code
	}
	if err := findLeaks(5 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest: goroutines leaked:", err)
		return 1
	}
	return 0
}

// findLeaks reports goroutines still running after patience. goleak alone
// gives them about half a second to end; on a loaded machine, a closed
// client's or server's goroutines can take longer, and that is no leak.
func findLeaks(patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

// Endpoint returns the shared member's HOST:PORT.
func Endpoint(t testing.TB) string {
	t.Helper()
	if endpoint == "" {
		t.Fatal("etcdtest: shared etcd is not running; call etcdtest.Main from the package's TestMain")
	}
	return endpoint
}

// Env is one test's view of the shared etcd.
type Env struct {
	// Client is connected to the shared member and closed when the test ends.
	Client *clientv3.Client
	// Prefix is a key prefix no other test uses, written as Patrol's --prefix
	// is (no trailing slash), e.g. "/test/TestX-3".
	Prefix string
	// Endpoint is the member's HOST:PORT.
	Endpoint string
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// New returns a fresh client and key prefix for t.
func New(t testing.TB) *Env {
	t.Helper()
	ep := Endpoint(t)
	cli := NewClient(t)
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	prefix := fmt.Sprintf("/test/%s-%d/", name, seq.Add(1))
	return &Env{Client: cli, Prefix: strings.TrimSuffix(prefix, "/"), Endpoint: ep}
}

// NewClient returns another client to the shared member, closed when t ends.
func NewClient(t testing.TB) *clientv3.Client {
	t.Helper()
	return ClientTo(t, Endpoint(t))
}

// ClientTo returns a client to endpoint (the shared member behind a
// nettest.Proxy, say), closed when t ends.
func ClientTo(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
	})
	if err != nil {
		t.Fatalf("etcdtest: connect: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Keys returns every key under prefix, for asserting what a test wrote.
func Keys(t testing.TB, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("etcdtest: list %s: %v", prefix, err)
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// KVs returns every key and value under prefix, with their versions.
func KVs(t testing.TB, cli *clientv3.Client, prefix string) []*mvccpb.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("etcdtest: list %s: %v", prefix, err)
	}
	return resp.Kvs
}

// WaitFor blocks until cond holds for the keys under prefix, re-evaluating
// it on every change (a watch, not a poll), or fails t after timeout. cond
// gets the current number of keys under prefix.
func WaitFor(t testing.TB, cli *clientv3.Client, prefix string, timeout time.Duration, what string, cond func(n int) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch // the watch is in place: no change between it and the first count is missed
	for {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatalf("etcdtest: waiting for %s: %v", what, err)
		}
		if cond(int(resp.Count)) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("etcdtest: timed out after %s waiting for %s (keys under %s: %d)", timeout, what, prefix, resp.Count)
		case _, ok := <-wch:
			if !ok {
				t.Fatalf("etcdtest: watch on %s closed while waiting for %s", prefix, what)
			}
		}
	}
}
