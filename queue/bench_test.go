package queue_test

import (
	"fmt"
	"os"
	"strconv"
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

// BenchmarkFairListing measures, at the listing level, how soon a 10-host
// batch is served when a large batch (FAIRBENCH_LISTING_HOSTS, default
// 20,000) fills every shard ahead of it: listings of 64 (a worker's
// default budget) until all 10 are listed, and tasks of the large batch
// handed out before the last of them, by a cursor told of both batches (fair) and by
// one that walks shards in key order (the catch-all alone, as before).
// Nothing is claimed: listed keys stay taken, as while their claims are
// in flight.
func BenchmarkFairListing(b *testing.B) {
	n := envInt(b, "FAIRBENCH_LISTING_HOSTS", 20000)
	f := setup(b)
	fence, _ := f.lead(b)
	big := f.submit(b, "a-sweep", n)
	small, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b-urgent", Check: "noop", Hosts: hosts(10)[:10], Priority: queue.PriorityHigh})
	if err != nil {
		b.Fatal(err)
	}
	for _, spec := range []queue.BatchSpec{big, small} {
		if err := f.q.Shard(f.ctx, fence, spec); err != nil {
			b.Fatal(err)
		}
	}
	order := queue.Assignment{}.ShardOrder("", 0)
	serve := func(batches map[string]queue.ListBatch) (listings, before int) {
		cur := queue.NewReadyCursor()
		cur.SetBatches(batches)
		got := 0
		for listings = 1; listings <= n; listings++ {
			ready, _, err := f.q.ListReadyFrom(f.ctx, cur, queue.DefaultZone, order, 64)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range ready {
				switch {
				case r.Task.Batch == "b-urgent":
					got++
				case got < 10:
					before++ // handed out before the small batch was served
				}
			}
			if got == 10 {
				return listings, before
			}
			if len(ready) == 0 {
				cur.Reset()
			}
		}
		b.Fatalf("the small batch was not served in %d listings", n)
		return 0, 0
	}
	var fairL, fairT, normL, normT, keyL, keyT int
	for b.Loop() {
		fairL, fairT = serve(map[string]queue.ListBatch{"a-sweep": {}, "b-urgent": {Priority: queue.PriorityHigh}})
		normL, normT = serve(map[string]queue.ListBatch{"a-sweep": {}, "b-urgent": {}})
		keyL, keyT = serve(nil)
	}
	b.ReportMetric(float64(fairL), "listings-high")
	b.ReportMetric(float64(normL), "listings-normal")
	b.ReportMetric(float64(keyL), "listings-keyorder")
	b.ReportMetric(float64(fairT), "tasks-before-high")
	b.ReportMetric(float64(normT), "tasks-before-normal")
	b.ReportMetric(float64(keyT), "tasks-before-keyorder")
	b.Logf("a 10-host batch behind a %d-host one, listings of 64 until all 10 are listed (tasks of the large batch handed out before the last): "+
		"priority high %d (%d), normal %d (%d), key order as before %d (%d)", n, fairL, fairT, normL, normT, keyL, keyT)
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
