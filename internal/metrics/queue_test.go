package metrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

func zoneHosts(zone string, n int) []inventory.Host {
	out := make([]inventory.Host, n)
	for i := range out {
		name := fmt.Sprintf("%s-host-%05d", zone, i)
		out[i] = inventory.Host{Name: name, Address: name, Port: 22, Vars: map[string]string{"zone": zone}}
	}
	return out
}

// submitAndShard submits a batch of hosts and shards it as the leader, so
// that its tasks are pending.
func submitAndShard(ctx context.Context, t testing.TB, q *queue.Queue, id string, hosts []inventory.Host) {
	t.Helper()
	spec, _, err := q.Submit(ctx, queue.SubmitRequest{ID: id, Check: "noop", Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := concurrency.NewSession(q.Client(), concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, q.Keys().Election())
	if err := el.Campaign(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if err := q.Shard(ctx, queue.Fence{Key: el.Key(), Rev: el.Rev()}, spec); err != nil {
		t.Fatal(err)
	}
}

// TestQueueCollectorReadsDepthFromEtcd walks tasks through pending,
// running and retrying in a real etcd and checks what a scrape reports at
// each step, zone by zone.
func TestQueueCollectorReadsDepthFromEtcd(t *testing.T) {
	env := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := queue.New(env.Client, env.Prefix)

	// A batch of 5 hosts in dc1 and 3 in dc2, sharded by a leader.
	submitAndShard(ctx, t, q, "b1", append(zoneHosts("dc1", 5), zoneHosts("dc2", 3)...))

	c := metrics.NewQueueCollector(q)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	metrics.SetClock(c, func() time.Time { return now })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	scrape := func(name string, labels ...string) float64 { t.Helper(); return value(t, reg, name, labels...) }

	if got := scrape("patrol_queue_up"); got != 1 {
		t.Fatalf("patrol_queue_up = %v, want 1", got)
	}
	for _, want := range []struct {
		zone    string
		pending float64
	}{{"dc1", 5}, {"dc2", 3}} {
		if got := scrape("patrol_queue_tasks", "state", "pending", "zone", want.zone); got != want.pending {
			t.Errorf("pending in %s = %v, want %v", want.zone, got, want.pending)
		}
		if got := scrape("patrol_queue_zone_unserved", "zone", want.zone); got != 1 {
			t.Errorf("%s has pending work and no worker: unserved = %v, want 1", want.zone, got)
		}
		if got := scrape("patrol_queue_worker_leases", "zone", want.zone); got != 0 {
			t.Errorf("worker leases in %s = %v, want 0", want.zone, got)
		}
	}
	if got := scrape("patrol_queue_active_batches"); got != 1 {
		t.Errorf("active batches = %v, want 1", got)
	}
	if got := scrape("patrol_etcd_db_size_bytes"); got <= 0 {
		t.Errorf("etcd db size = %v, want > 0", got)
	}
	if got := scrape("patrol_etcd_db_quota_bytes"); got <= 0 {
		t.Errorf("etcd db quota = %v, want > 0", got)
	}

	// A worker registers in dc1 and claims 2 of its tasks, and puts one of
	// them back to retry later. Within the cache window nothing changes.
	worker, err := concurrency.NewSession(env.Client, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	if err := q.Register(ctx, worker.Lease(), queue.WorkerInfo{ID: "w1", Zone: "dc1", Capacity: 4}); err != nil {
		t.Fatal(err)
	}
	ready, _, err := q.ListReady(ctx, "dc1", queue.Assignment{}.ShardOrder("", 0), 2)
	if err != nil || len(ready) != 2 {
		t.Fatalf("list ready: %d, %v", len(ready), err)
	}
	g, err := q.Claim(ctx, worker.Lease(), "w1", "g1", ready, now, func(queue.Task) time.Time { return now.Add(time.Minute) })
	if err != nil || g == nil {
		t.Fatalf("claim: %v", err)
	}
	retry := g.Running.Tasks[0]
	retry.Attempt++
	retry.NotBefore = time.Now().Add(time.Hour)
	if rej, err := q.Commit(ctx, []queue.Outcome{{Group: g, Index: 0, Retry: &retry}}); err != nil || len(rej) != 0 {
		t.Fatalf("commit: %v %v", rej, err)
	}
	if got := scrape("patrol_queue_tasks", "state", "pending", "zone", "dc1"); got != 5 {
		t.Errorf("within the cache window pending in dc1 = %v, want the cached 5", got)
	}

	now = now.Add(metrics.CacheFor + time.Second)
	for _, want := range []struct {
		state string
		zone  string
		n     float64
	}{
		{"pending", "dc1", 3}, {"running", "dc1", 1}, {"retrying", "dc1", 1}, {"held", "dc1", 0},
		{"pending", "dc2", 3}, {"running", "dc2", 0}, {"retrying", "dc2", 0},
	} {
		if got := scrape("patrol_queue_tasks", "state", want.state, "zone", want.zone); got != want.n {
			t.Errorf("%s in %s = %v, want %v", want.state, want.zone, got, want.n)
		}
	}
	if got := scrape("patrol_queue_worker_leases", "zone", "dc1"); got != 1 {
		t.Errorf("worker leases in dc1 = %v, want 1", got)
	}
	if got := scrape("patrol_queue_zone_unserved", "zone", "dc1"); got != 0 {
		t.Errorf("dc1 has a worker: unserved = %v, want 0", got)
	}
	if got := scrape("patrol_queue_zone_unserved", "zone", "dc2"); got != 1 {
		t.Errorf("dc2 has none: unserved = %v, want 1", got)
	}
	// The pending tasks were there at the first reading, 6s ago.
	if got, want := scrape("patrol_queue_oldest_pending_age_seconds", "zone", "dc2"), (metrics.CacheFor + time.Second).Seconds(); got != want {
		t.Errorf("oldest pending age in dc2 = %v, want %v", got, want)
	}

	// The last tasks of dc2 are claimed: no pending work, no age, and dc2
	// is no longer unserved.
	ready, _, err = q.ListReady(ctx, "dc2", queue.Assignment{}.ShardOrder("", 0), 10)
	if err != nil || len(ready) != 3 {
		t.Fatalf("list ready: %d, %v", len(ready), err)
	}
	if g, err := q.Claim(ctx, worker.Lease(), "w1", "g2", ready, now, func(queue.Task) time.Time { return now.Add(time.Minute) }); err != nil || g == nil {
		t.Fatalf("claim: %v", err)
	}
	now = now.Add(metrics.CacheFor + time.Second)
	if got := scrape("patrol_queue_oldest_pending_age_seconds", "zone", "dc2"); got != 0 {
		t.Errorf("oldest pending age in dc2 with nothing pending = %v, want 0", got)
	}
	if got := scrape("patrol_queue_zone_unserved", "zone", "dc2"); got != 0 {
		t.Errorf("dc2 has nothing pending: unserved = %v, want 0", got)
	}
	if got := scrape("patrol_queue_tasks", "state", "running", "zone", "dc2"); got != 3 {
		t.Errorf("running in dc2 = %v, want 3", got)
	}
}

// TestQueueCollectorReportsEtcdDown: when etcd cannot be read, up is 0 and
// the scrape still succeeds with the last values.
func TestQueueCollectorReportsEtcdDown(t *testing.T) {
	env := etcdtest.New(t)
	cli := etcdtest.NewClient(t)
	q := queue.New(cli, env.Prefix)
	c := metrics.NewQueueCollector(q)
	now := time.Now()
	metrics.SetClock(c, func() time.Time { return now })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if got := value(t, reg, "patrol_queue_up"); got != 1 {
		t.Fatalf("up = %v, want 1", got)
	}
	cli.Close() // every later read fails
	now = now.Add(metrics.CacheFor + time.Second)
	if got := value(t, reg, "patrol_queue_up"); got != 0 {
		t.Fatalf("up with etcd unreadable = %v, want 0", got)
	}
	if got := value(t, reg, "patrol_queue_active_batches"); got != 0 {
		t.Fatalf("active batches = %v, want the last value, 0", got)
	}
}
