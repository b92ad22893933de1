package queue_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/queue"
)

// submitAll submits batches (ID -> hosts, priority) in the order given
// and shards them under one leadership, the test's first.
func (f *fixture) submitAll(t *testing.T, batches ...fairBatch) {
	t.Helper()
	var specs []queue.BatchSpec
	for _, b := range batches {
		hs := hosts(b.hosts)
		for i := range hs {
			hs[i].Name = b.id + "-" + hs[i].Name // hosts of different batches land in different places
		}
		spec, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: b.id, Check: "noop", Hosts: hs, Priority: b.priority})
		if err != nil {
			t.Fatalf("submit %s: %v", b.id, err)
		}
		specs = append(specs, spec)
	}
	if f.fence == nil {
		fence, _ := f.lead(t)
		f.fence = &fence
	}
	fence := *f.fence
	for _, spec := range specs {
		if err := f.q.Shard(f.ctx, fence, spec); err != nil {
			t.Fatal(err)
		}
	}
}

type fairBatch struct {
	id       string
	hosts    int
	priority int
}

// lister lists as a worker does: a cursor, its shard order, a limit per
// listing, and optionally a claim of each listing.
type lister struct {
	f      *fixture
	cur    *queue.ReadyCursor
	order  []int
	claim  bool
	counts map[string]int // tasks listed per batch
	seq    []string       // the batch of each task listed, in order
}

func (f *fixture) lister(t *testing.T, batches map[string]queue.ListBatch, claim bool) *lister {
	cur := queue.NewReadyCursor()
	if batches != nil {
		cur.SetBatches(batches)
	}
	return &lister{f: f, cur: cur, order: queue.Assignment{}.ShardOrder("", 0), claim: claim, counts: map[string]int{}}
}

// list lists up to limit tasks once (and claims them, then forgets them,
// when the lister claims).
func (l *lister) list(t *testing.T, limit int) []queue.Ready {
	t.Helper()
	ready, bad, err := l.f.q.ListReadyFrom(l.f.ctx, l.cur, queue.DefaultZone, l.order, limit)
	if err != nil || len(bad) > 0 {
		t.Fatalf("list: %v %v", err, bad)
	}
	for _, r := range ready {
		l.counts[r.Task.Batch]++
		l.seq = append(l.seq, r.Task.Batch)
	}
	if l.claim && len(ready) > 0 {
		s := l.f.session(t, 30)
		now := time.Now()
		g, err := l.f.q.Claim(l.f.ctx, s.Lease(), "w", fmt.Sprintf("g%d", groupSeq.Add(1)), ready, now,
			func(queue.Task) time.Time { return now.Add(time.Minute) })
		if err != nil || g == nil || len(g.Running.Tasks) != len(ready) {
			t.Fatalf("claim %d listed: %+v, err %v", len(ready), g, err)
		}
		l.cur.Forget(ready)
	}
	return ready
}

// listingsUntil lists (and claims) until want tasks of batch are listed,
// and returns how many listings it took; 0 if max listings did not.
func (l *lister) listingsUntil(t *testing.T, batch string, want, limit, max int) int {
	t.Helper()
	for n := 1; n <= max; n++ {
		if len(l.list(t, limit)) == 0 {
			l.cur.Reset()
		}
		if l.counts[batch] >= want {
			return n
		}
	}
	return 0
}

// TestSmallBatchIsListedBesideALargeOne: a large batch's tasks fill every
// shard ahead of a small batch's (its ID sorts first). A cursor told of
// both lists the small batch's tasks at once; one that walks shards in
// key order, as the catch-all alone does, lists them only once the large
// batch is drained from the shards ahead of them.
func TestSmallBatchIsListedBesideALargeOne(t *testing.T) {
	f := setup(t)
	f.submitAll(t, fairBatch{id: "a-sweep", hosts: 3000}, fairBatch{id: "b-urgent", hosts: 10})

	fair := f.lister(t, map[string]queue.ListBatch{"a-sweep": {}, "b-urgent": {}}, true)
	n := fair.listingsUntil(t, "b-urgent", 10, 32, 100)
	if n == 0 || n > 2 {
		t.Fatalf("the small batch's 10 tasks took %d listings of 32 beside the large batch (0: more than 100); want 1 or 2 (listed: %v)", n, fair.counts)
	}
	t.Logf("fair: the 10-task batch listed within %d listing(s) of 32 (%d tasks of the large batch meanwhile)", n, fair.counts["a-sweep"])
}

// TestKeyOrderListingWaitsBehindALargeBatch is the control: without the
// batches told, the listing walks each shard in key order, and the small
// batch waits (this is what the fair listing is for).
func TestKeyOrderListingWaitsBehindALargeBatch(t *testing.T) {
	f := setup(t)
	f.submitAll(t, fairBatch{id: "a-sweep", hosts: 3000}, fairBatch{id: "b-urgent", hosts: 10})
	plain := f.lister(t, nil, true)
	n := plain.listingsUntil(t, "b-urgent", 10, 32, 200)
	if n != 0 && n < 20 {
		t.Fatalf("in key order the small batch came out within %d listings; the control should show it waiting behind the large one", n)
	}
	t.Logf("key order: the 10-task batch needed %d listings of 32 (0: more than 200); %d tasks of the large batch meanwhile", n, plain.counts["a-sweep"])
}

// TestPriorityShareFollowsWeights: over many listings a high batch gets
// its weight's share against a low one (32 to 2), and the low one is not
// starved: it gets a task in every PriorityWeight sum (34) handed out.
func TestPriorityShareFollowsWeights(t *testing.T) {
	f := setup(t)
	f.submitAll(t, fairBatch{id: "a-low", hosts: 1500, priority: queue.PriorityLow},
		fairBatch{id: "b-high", hosts: 1500, priority: queue.PriorityHigh})
	l := f.lister(t, map[string]queue.ListBatch{"a-low": {Priority: queue.PriorityLow}, "b-high": {Priority: queue.PriorityHigh}}, true)
	for range 40 {
		if len(l.list(t, 16)) != 16 {
			t.Fatalf("a listing of 16 came back short with 3000 tasks ready: %v", l.counts)
		}
	}
	hi, lo := l.counts["b-high"], l.counts["a-low"]
	t.Logf("640 tasks listed: high %d, low %d (weights %d:%d)", hi, lo, queue.PriorityWeight(queue.PriorityHigh), queue.PriorityWeight(queue.PriorityLow))
	if hi < 12*lo {
		t.Fatalf("high got %d tasks, low %d: want about 16 times as many for high", hi, lo)
	}
	w := queue.PriorityWeight(queue.PriorityHigh) + queue.PriorityWeight(queue.PriorityLow)
	gap := 0
	for i, b := range l.seq {
		gap++
		if b == "a-low" {
			gap = 0
		}
		if gap >= w {
			t.Fatalf("low went %d tasks without one (up to task %d); the rule promises one in every %d", gap, i, w)
		}
	}
}

// TestEqualPrioritiesShareEvenly: two normal batches, in the same
// listings, get the same number of tasks.
func TestEqualPrioritiesShareEvenly(t *testing.T) {
	f := setup(t)
	f.submitAll(t, fairBatch{id: "a", hosts: 500}, fairBatch{id: "b", hosts: 500})
	l := f.lister(t, map[string]queue.ListBatch{"a": {}, "b": {}}, true)
	for range 10 {
		l.list(t, 20)
	}
	if d := l.counts["a"] - l.counts["b"]; d < -1 || d > 1 {
		t.Fatalf("200 tasks listed: %v; want an even split", l.counts)
	}
}

// TestUnknownBatchIsStillListed: a batch the cursor was not told of (its
// active event not delivered yet) is found by the catch-all, which skips
// the batches it knows, even behind a large known batch.
func TestUnknownBatchIsStillListed(t *testing.T) {
	f := setup(t)
	f.submitAll(t, fairBatch{id: "a-sweep", hosts: 3000}, fairBatch{id: "b-new", hosts: 10}, fairBatch{id: "c-sweep", hosts: 1000})
	l := f.lister(t, map[string]queue.ListBatch{"a-sweep": {}, "c-sweep": {}}, true)
	n := l.listingsUntil(t, "b-new", 10, 32, queue.DefaultShards)
	if n == 0 {
		t.Fatalf("the unknown batch's 10 tasks were not all listed in %d listings (one a shard): %v", queue.DefaultShards, l.counts)
	}
	t.Logf("the unknown batch listed within %d listings: %v", n, l.counts)
	// Once told of, it is listed like the others.
	f.submitAll(t, fairBatch{id: "b-new2", hosts: 10})
	l.cur.SetBatches(map[string]queue.ListBatch{"a-sweep": {}, "c-sweep": {}, "b-new2": {}})
	if n := l.listingsUntil(t, "b-new2", 10, 32, 2); n == 0 {
		t.Fatalf("a batch told of took more than 2 listings: %v", l.counts)
	}
}

// TestFairListingDrainsEveryBatchOnce: listing and claiming through a
// cursor told of some batches (and not of one) hands out every task of
// every batch exactly once, and then finds nothing.
func TestFairListingDrainsEveryBatchOnce(t *testing.T) {
	f := setup(t)
	f.submitAll(t, fairBatch{id: "a", hosts: 300, priority: queue.PriorityHigh}, fairBatch{id: "b", hosts: 7},
		fairBatch{id: "c", hosts: 150, priority: queue.MinPriority}, fairBatch{id: "d", hosts: 40})
	l := f.lister(t, map[string]queue.ListBatch{"a": {Priority: queue.PriorityHigh}, "b": {}, "c": {Priority: queue.MinPriority}}, true)
	seen := map[string]bool{}
	for empty := 0; empty < 2; {
		ready := l.list(t, 13)
		if len(ready) == 0 {
			l.cur.Reset()
			empty++
			continue
		}
		empty = 0
		for _, r := range ready {
			if seen[r.Key] {
				t.Fatalf("%s listed twice", r.Key)
			}
			seen[r.Key] = true
		}
	}
	want := map[string]int{"a": 300, "b": 7, "c": 150, "d": 40}
	for b, n := range want {
		if l.counts[b] != n {
			t.Fatalf("listed %v, want %v", l.counts, want)
		}
	}
	if n := f.count(t, f.q.Keys().Ready()); n != 0 {
		t.Fatalf("%d tasks left ready", n)
	}
}

func TestParsePriority(t *testing.T) {
	for in, want := range map[string]int{"high": 2, "HIGH": 2, "normal": 0, "low": -2, "-3": -3, "3": 3, "0": 0, "1": 1} {
		if got, err := queue.ParsePriority(in); err != nil || got != want {
			t.Errorf("ParsePriority(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"urgent", "4", "-4", "1.5", "hi"} {
		if _, err := queue.ParsePriority(in); err == nil || !strings.Contains(err.Error(), "high, normal or low") {
			t.Errorf("ParsePriority(%q): err %v; want one that lists the accepted values", in, err)
		}
	}
	if w := []int{queue.PriorityWeight(queue.PriorityLow), queue.PriorityWeight(queue.PriorityNormal), queue.PriorityWeight(queue.PriorityHigh)}; w[0] != 2 || w[1] != 8 || w[2] != 32 {
		t.Fatalf("weights low, normal, high = %v; want 2, 8, 32", w)
	}
}

// TestSubmitRefusesABadPriority: a priority out of range writes nothing.
func TestSubmitRefusesABadPriority(t *testing.T) {
	f := setup(t)
	_, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b1", Check: "noop", Hosts: hosts(3), Priority: 7})
	if err == nil || !strings.Contains(err.Error(), "priority 7") {
		t.Fatalf("submit with priority 7: %v; want it refused", err)
	}
	if n := f.count(t, f.q.Keys().All()); n != 0 {
		t.Fatalf("a refused submit wrote %d keys", n)
	}
	spec, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b2", Check: "noop", Hosts: hosts(3), Priority: queue.PriorityHigh})
	if err != nil || spec.Priority != queue.PriorityHigh {
		t.Fatalf("submit high: %+v, %v", spec, err)
	}
	if got, err := f.q.LoadBatch(f.ctx, "b2"); err != nil || got.Priority != queue.PriorityHigh {
		t.Fatalf("stored spec: %+v, %v", got, err)
	}
	// The same ID at another priority is another batch.
	if _, _, err := f.q.Submit(f.ctx, queue.SubmitRequest{ID: "b2", Check: "noop", Hosts: hosts(3)}); err == nil {
		t.Fatal("resubmitting b2 at normal priority was taken as the same batch")
	}
}
