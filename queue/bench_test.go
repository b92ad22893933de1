package queue_test

import (
	"fmt"
	"testing"

	"github.com/patrol-dev/patrol/queue"
)

// The benchmarks run on the test harness's embedded etcd, which has fsync
// off: absolute figures are optimistic, ratios between them are what count.

// BenchmarkShard measures how fast a leader turns hosts into tasks and
// ready keys.
func BenchmarkShard(b *testing.B) {
	const n = 5000
	f := setup(b)
	fence, _ := f.lead(b)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		spec := f.submit(b, fmt.Sprint("b", i), n)
		b.StartTimer()
		if err := f.q.Shard(f.ctx, fence, spec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "hosts/s")
}

// BenchmarkClaimComplete measures one worker claiming groups of MaxClaim
// and committing each group's results in one fenced transaction.
func BenchmarkClaimComplete(b *testing.B) {
	f := setup(b)
	fence, _ := f.lead(b)
	s := f.session(b, 60)
	done := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		spec := f.submit(b, fmt.Sprint("b", i), queue.MaxClaim)
		if err := f.q.Shard(f.ctx, fence, spec); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for _, g := range f.claimAll(b, s.Lease(), "bench") {
			outs := finishAll(g, queue.StatusOK, "bench")
			if rej, err := f.q.Commit(f.ctx, outs); len(rej) > 0 || err != nil {
				b.Fatal(rej, err)
			}
			done += len(outs)
		}
	}
	b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "tasks/s")
}
