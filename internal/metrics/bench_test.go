package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patrol-dev/patrol/internal/etcdtest"
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
	submitAndShard(ctx, b, q, "bench", append(zoneHosts("dc1", 10000), zoneHosts("dc2", 10000)...))
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
