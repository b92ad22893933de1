//go:build linux

package scalebench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/etcdserver"
	"github.com/patrol-dev/patrol/internal/proctest"
)

// idleWindow is how long an idle leader's requests are counted.
const idleWindow = 30 * time.Second

// BenchmarkIdleLeader counts the etcd requests a leader issues while one
// batch is pending and nothing moves: the batch is submitted and sharded
// with no worker running, then etcd's own gRPC counters (this process
// runs the embedded etcd, and the scheduler is its only client meanwhile)
// are read over idleWindow. Sizes come from IDLEBENCH_HOSTS (comma
// separated), default 1,000 and 1,000,000: the rate must not depend on
// the batch's size. It prints its figures and asserts none of them.
func BenchmarkIdleLeader(b *testing.B) {
	bin := proctest.Binary(b)
	hosts := []int{1000, 1000000}
	if v := os.Getenv("IDLEBENCH_HOSTS"); v != "" {
		hosts = hosts[:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("IDLEBENCH_HOSTS %q: want sizes such as 1000,1000000", v)
			}
			hosts = append(hosts, n)
		}
	}
	type idle struct {
		hosts    int
		sharded  time.Duration
		total    float64            // requests per second
		byMethod map[string]float64 // per second, by gRPC method
	}
	var runs []idle
	for b.Loop() {
		runs = runs[:0]
		for _, n := range hosts {
			sharded, reqs := idleRequests(b, bin, n)
			r := idle{hosts: n, sharded: sharded, byMethod: map[string]float64{}}
			for m, c := range reqs {
				r.byMethod[m] = c / idleWindow.Seconds()
				r.total += r.byMethod[m]
			}
			runs = append(runs, r)
		}
	}
	fmt.Fprintf(os.Stderr, "\nidle leader: one pending noop batch, sharded, no worker; etcd requests the scheduler issued over %s (etcd's gRPC counters)\n", idleWindow)
	fmt.Fprintf(os.Stderr, "%-10s %-11s %-12s %s\n", "HOSTS", "SHARDED IN", "REQUESTS/S", "BY METHOD (/s)")
	for _, r := range runs {
		var parts []string
		for _, m := range slices.Sorted(maps.Keys(r.byMethod)) {
			parts = append(parts, fmt.Sprintf("%s %.1f", m, r.byMethod[m]))
		}
		fmt.Fprintf(os.Stderr, "%-10d %-11s %-12.1f %s\n", r.hosts, r.sharded.Round(100*time.Millisecond), r.total, strings.Join(parts, ", "))
		b.ReportMetric(r.total, fmt.Sprintf("req/s@%d", r.hosts))
	}
}

// idleRequests submits n hosts to a fresh etcd with a scheduler and no
// worker, waits until the batch is sharded and the leader has settled,
// and returns how long sharding took and the requests etcd answered, by
// method, over idleWindow.
func idleRequests(b *testing.B, bin string, n int) (time.Duration, map[string]float64) {
	dir := b.TempDir()
	srv, err := etcdserver.Start(etcdserver.Config{DataDir: filepath.Join(dir, "etcd"), CompactionRetention: compaction, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	env := []string{"PATROL_ENDPOINTS=" + srv.Endpoint(), "PATROL_PREFIX=" + prefix, "PATROL_METRICS_ADDR="}
	sched := proctest.Start(b, bin, "scheduler", env, "scheduler", "--id", "s1")
	defer sched.Stop(b)

	inv := filepath.Join(dir, "hosts.txt")
	writeInventory(b, inv, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	sub := exec.CommandContext(ctx, bin, "submit", "-i", inv, "--check", "noop", "--batch-id", "idle")
	sub.Env = append(os.Environ(), env...)
	if out, err := sub.CombinedOutput(); err != nil {
		b.Fatalf("submit: %v\n%s", err, out)
	}
	sched.WaitLog(b, 30*time.Minute, "batch sharded", nil)
	sharded := time.Since(start)
	// Its duties' first passes over the new batch (publishing its counts,
	// assigning shards) are behind it once a few of their cadences passed.
	time.Sleep(10 * time.Second)
	before := grpcReceived(b)
	time.Sleep(idleWindow)
	after := grpcReceived(b)
	for m := range after {
		after[m] -= before[m]
		if after[m] == 0 {
			delete(after, m)
		}
	}
	return sharded, after
}

// grpcReceived reads the embedded etcd's count of request messages
// received, by gRPC method: a unary call's request, and each message on a
// stream (a lease keep-alive, a watch created or a progress request).
func grpcReceived(b *testing.B) map[string]float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_msg_received_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var method string
			for _, l := range m.GetLabel() {
				if l.GetName() == "grpc_method" {
					method = l.GetValue()
				}
			}
			out[method] += m.GetCounter().GetValue()
		}
	}
	return out
}
