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

// BenchmarkQueueScrape20k measures what a scrape of the queue collector
// costs with 20,000 tasks pending in two zones: the reading from etcd that
// CacheFor amortises.
func BenchmarkQueueScrape20k(b *testing.B) {
	env := etcdtest.New(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q := queue.New(env.Client, env.Prefix)
	hosts := make([]inventory.Host, 20000)
	for i := range hosts {
		name := fmt.Sprintf("h%05d", i)
		hosts[i] = inventory.Host{Name: name, Address: name, Port: 22, Vars: map[string]string{"zone": []string{"dc1", "dc2"}[i%2]}}
	}
	spec, _, err := q.Submit(ctx, queue.SubmitRequest{ID: "bench", Check: "noop", Hosts: hosts})
	if err != nil {
		b.Fatal(err)
	}
	sess, err := concurrency.NewSession(env.Client)
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, q.Keys().Election())
	if err := el.Campaign(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	if err := q.Shard(ctx, queue.Fence{Key: el.Key(), Rev: el.Rev()}, spec); err != nil {
		b.Fatal(err)
	}
	c := metrics.NewQueueCollector(q)
	metrics.SetCacheFor(c, 0)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	b.ResetTimer()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := value(b, reg, "patrol_queue_tasks", "state", "pending", "zone", "dc1"); got != 10000 {
		b.Fatalf("pending in dc1 = %v, want 10000", got)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/scrape")
}
