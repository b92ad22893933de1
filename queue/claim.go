package queue

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxClaim is the most tasks one claim transaction takes: a compare and a
// delete per task, plus the group's claim and running records, stay within
// etcd's 128 operations per branch.
const MaxClaim = 64

// Ready is a claimable task as a worker saw it.
type Ready struct {
	Task   Task
	Key    string
	ModRev int64 // the ready key's revision when listed; the claim compares it

	value []byte // the ready key's value as listed: Task's JSON
}

// BadValue is a key whose value did not decode, found while listing.
type BadValue struct {
	KV  *mvccpb.KeyValue
	Err error
}

// Key is the malformed value's key.
func (b BadValue) Key() string { return string(b.KV.Key) }

// ListReady returns up to limit claimable tasks of a zone, trying its
// shards in the order given (a worker's assigned shards first), so that
// workers rarely race for the same keys. Each range covers one shard only:
// etcd counts every key in a range even when a limit is set, so a range
// over the whole zone would cost as much as the queue is long. The shards
// are read together, in one transaction of ranges (one round trip, at one
// revision, so a listing never sees half of a sharding transaction).
// Values that do not decode are returned apart.
func (q *Queue) ListReady(ctx context.Context, zone string, order []int, limit int) ([]Ready, []BadValue, error) {
	return q.ListReadyFrom(ctx, nil, zone, order, limit)
}

// ReadyCursor is where a claimer's listings resume, and how they share
// out their tasks between batches.
//
// A shard's ready keys sort by batch, so a listing that walked each shard
// in key order would hand out every task of an older batch before any of
// a newer one: a small batch would wait behind a large one. So a cursor
// lists by unit, a batch's part of a shard (Keys.ReadyBatchShard), for the
// batches it was told of (SetBatches: a worker tells it the active
// batches, with their priorities), and hands out what it found by a
// smooth weighted round robin over the batches, each weighted by its
// priority (PriorityWeight), carried over from one listing to the next.
// A catch-all unit per shard, the shard's whole range, finds the tasks of
// batches it was not told of (a batch whose active event has not arrived
// yet): it jumps over the batches it knows, which have units of their
// own, and what it finds is handed out in the same round robin, at normal
// priority.
//
// etcd keeps a deleted key in its index (a tombstone) until compaction and
// visits it in every range that covers it, so a range from a unit's start
// would walk every task claimed from it since: near the end of a large
// batch a listing would cost as much as the batch. The cursor starts each
// unit's range just after the last key listed there and wraps around to
// the unit's start when it reaches the end, so every key is still seen;
// it remembers the units a listing found empty and skips them until
// Reset, and how many keys each unit held, so that a listing reads only
// as many units as it likely needs. Keys it has listed are not listed
// again until Forget: a claimer may list its next group while the claim
// of the last one is in flight. A ReadyCursor is owned by one goroutine.
type ReadyCursor struct {
	next  map[unit]string // unit -> the key its next range starts at
	empty map[unit]bool   // units found empty since the last Reset
	found map[unit]int    // unit -> keys the last listing of it left there
	full  map[unit]bool   // units whose last range stopped at its limit
	taken map[string]unit // keys listed and not yet forgotten -> their shard and batch
	held  map[unit]int    // taken keys per shard and batch
	heldS map[int]int     // taken keys per shard

	batches map[string]ListBatch // the batches told of, by ID
	credit  map[string]int       // round robin: each batch's credit toward its next task
	turn    int                  // rotates which batch is planned first
}

// ListBatch is what a listing needs to know of a batch.
type ListBatch struct {
	Priority int // MinPriority to MaxPriority; see PriorityWeight
	Shards   int // its tasks are in shards 0 to Shards-1; 0: any shard
}

// unit is what one range of a listing covers: a batch's part of a shard,
// or with batch "" the whole shard (the catch-all).
type unit struct {
	shard int
	batch string
}

// NewReadyCursor returns a cursor at the start of every shard.
func NewReadyCursor() *ReadyCursor {
	return &ReadyCursor{next: map[unit]string{}, empty: map[unit]bool{}, found: map[unit]int{}, full: map[unit]bool{},
		taken: map[string]unit{}, held: map[unit]int{}, heldS: map[int]int{}, batches: map[string]ListBatch{}, credit: map[string]int{}}
}

// Reset makes the next listing look at every unit again. Call it when
// tasks may have become ready (the leader bumps Keys.Wake in every
// transaction that makes a task ready), and now and then in any case.
func (c *ReadyCursor) Reset() { clear(c.empty) }

// SetBatches tells the cursor which batches may have ready tasks, and
// their priorities: listings read a unit per batch and shard for them,
// and share what they find by the batches' weights. Tasks of other
// batches are still found, by the catch-all. What the cursor remembered
// of a batch left out is forgotten.
func (c *ReadyCursor) SetBatches(batches map[string]ListBatch) {
	c.batches = maps.Clone(batches)
	if c.batches == nil {
		c.batches = map[string]ListBatch{}
	}
	for _, m := range []map[unit]bool{c.empty, c.full} {
		maps.DeleteFunc(m, func(u unit, _ bool) bool { return c.gone(u) })
	}
	maps.DeleteFunc(c.next, func(u unit, _ string) bool { return c.gone(u) })
	maps.DeleteFunc(c.found, func(u unit, _ int) bool { return c.gone(u) })
}

// gone reports whether u is a batch's unit for a batch not told of.
func (c *ReadyCursor) gone(u unit) bool {
	_, known := c.batches[u.batch]
	return u.batch != "" && !known
}

// Forget lets listings return ready's keys again: call it once their
// claim has returned, whatever it took.
func (c *ReadyCursor) Forget(ready []Ready) {
	for _, r := range ready {
		if u, ok := c.taken[r.Key]; ok {
			delete(c.taken, r.Key)
			c.held[u]--
			c.heldS[u.shard]--
			if c.held[u] <= 0 {
				delete(c.held, u)
			}
		}
	}
}

// maxListRanges is the most ranges one listing transaction holds, within
// etcd's 128 operations per branch.
const maxListRanges = 64

// maxGaps is the most gaps between batches told of that the catch-all
// reads in a shard at once.
const maxGaps = 8

// readyRange is one range of a listing: a unit from a key to another.
type readyRange struct {
	unit
	from, to string
	wrap     bool // the part of the unit before the cursor
	gap      bool // the catch-all's, between batches told of
	limit    int  // the most keys it reads
}

// source is what a listing plans ranges for: a batch's units, or the
// catch-all's (batch "").
type source struct {
	batch  string
	weight int
	units  []unit // not planned yet in this listing, in shard order
	share  int    // the tasks it is expected to give in this transaction
	est    int    // what its planned units are expected to hold
	n      int    // units planned in this transaction
}

// ListReadyFrom is ListReady resuming each unit where cur left it, and
// moving cur on; with a nil cur it reads every shard in order from its
// start. With a cursor, one transaction reads, for every batch told of
// and for the catch-all, the units it expects to need (those not found
// empty, each counted at what the last listing left there, one not seen
// yet at one key) to give that batch twice its weighted share of limit,
// at least one unit each; it reads further units in another transaction
// only when that found nothing. What the ranges found is handed out by
// the batches' weights (see ReadyCursor). Either way the ranges go out
// together, at most maxListRanges to a transaction.
func (q *Queue) ListReadyFrom(ctx context.Context, cur *ReadyCursor, zone string, order []int, limit int) ([]Ready, []BadValue, error) {
	if cur == nil {
		return q.listShards(ctx, zone, order, limit)
	}
	out := make([]Ready, 0, max(0, min(limit, MaxClaim)))
	var bad []BadValue
	var rev int64
	srcs := cur.sources(order)
	cur.turn++
	for len(out) < limit {
		plan := cur.plan(q.keys, zone, srcs, limit-len(out), limit)
		if len(plan) == 0 {
			break
		}
		resp, err := q.readRanges(ctx, plan, rev)
		if err != nil {
			return nil, nil, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		out, bad = cur.take(q.keys, zone, plan, resp, out, bad, limit)
		if len(out) > 0 {
			break // a listing costs one round trip when it finds tasks
		}
	}
	return out, bad, nil
}

// readRanges reads plan in one transaction, at rev when it is set.
func (q *Queue) readRanges(ctx context.Context, plan []readyRange, rev int64) (*clientv3.TxnResponse, error) {
	ops := make([]clientv3.Op, len(plan))
	for i, r := range plan {
		opts := []clientv3.OpOption{clientv3.WithRange(r.to), clientv3.WithLimit(int64(r.limit))}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		ops[i] = clientv3.OpGet(r.from, opts...)
	}
	return q.txn(ctx, "list_ready").Then(ops...).Commit()
}

// listShards lists whole shards in order, from their start, without a
// cursor.
func (q *Queue) listShards(ctx context.Context, zone string, order []int, limit int) ([]Ready, []BadValue, error) {
	out := make([]Ready, 0, max(0, min(limit, MaxClaim)))
	var bad []BadValue
	var rev int64
	for len(order) > 0 && len(out) < limit {
		var plan []readyRange
		for len(order) > 0 && len(plan) < maxListRanges {
			prefix := q.keys.ReadyShard(zone, order[0])
			plan = append(plan, readyRange{unit: unit{shard: order[0]}, from: prefix, to: prefixEnd(prefix), limit: limit - len(out)})
			order = order[1:]
		}
		resp, err := q.readRanges(ctx, plan, rev)
		if err != nil {
			return nil, nil, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for i := range plan {
			for _, kv := range resp.Responses[i].GetResponseRange().Kvs {
				if len(out) >= limit {
					break
				}
				var t Task
				if err := decodeKV(kv, &t); err != nil {
					bad = append(bad, BadValue{KV: kv, Err: err})
					continue
				}
				out = append(out, Ready{Task: t, Key: string(kv.Key), ModRev: kv.ModRevision, value: kv.Value})
			}
		}
	}
	return out, bad, nil
}

// sources returns what a listing plans ranges for: each batch told of,
// with its units in the shards of order it spreads over, and the
// catch-all, leaving out units found empty.
func (c *ReadyCursor) sources(order []int) []*source {
	ids := slices.Sorted(maps.Keys(c.batches))
	if len(ids) > 0 {
		k := c.turn % len(ids) // who is planned first when ranges run short
		ids = append(ids[k:], ids[:k]...)
	}
	var out []*source
	add := func(batch string, weight, shards int) {
		s := &source{batch: batch, weight: weight}
		for _, shard := range order {
			u := unit{shard: shard, batch: batch}
			if (shards > 0 && shard >= shards) || c.empty[u] {
				continue
			}
			s.units = append(s.units, u)
		}
		if len(s.units) > 0 {
			out = append(out, s)
		}
	}
	for _, id := range ids {
		b := c.batches[id]
		add(id, PriorityWeight(b.Priority), b.Shards)
	}
	// The catch-all weighs least: it is there for batches not told of yet,
	// and alone (no batch told of) it is planned for everything. Beside
	// batches told of it reads one shard a transaction, a different one
	// each listing.
	if len(ids) > 0 && len(order) > 0 {
		k := c.turn % len(order)
		order = append(order[k:len(order):len(order)], order[:k]...)
	}
	add("", PriorityWeight(MinPriority), 0)
	return out
}

// gap is the catch-all's range in shard from a key: from there, moved
// past any batch told of whose tasks it falls among, to the first such
// batch's tasks after it, or to the shard's end. So the catch-all never
// reads the tasks (or the tombstones) of batches that have units of their
// own.
func (c *ReadyCursor) gap(k Keys, zone string, shard int, from string) (string, string) {
	prefix := k.ReadyShard(zone, shard)
	end := prefixEnd(prefix)
	if from <= prefix || from >= end {
		from = prefix
	}
	known := make([]string, 0, len(c.batches))
	for id := range c.batches {
		known = append(known, k.ReadyBatchShard(zone, shard, id))
	}
	slices.Sort(known) // prefixes of batch IDs, which hold no '/', never nest
	for _, p := range known {
		switch {
		case from >= prefixEnd(p):
		case from >= p:
			from = prefixEnd(p) // among its tasks: past them
		default:
			return from, p // the next batch told of
		}
	}
	return from, end
}

// unitPrefix is the key prefix a unit's range covers.
func (k Keys) unitPrefix(zone string, u unit) string {
	if u.batch == "" {
		return k.ReadyShard(zone, u.shard)
	}
	return k.ReadyBatchShard(zone, u.shard, u.batch)
}

// plan picks the ranges of one listing transaction: units of each source
// until they are expected to hold twice its share of need (at least one
// unit each), the source whose planned units hold least for its weight
// first, within maxListRanges.
func (c *ReadyCursor) plan(k Keys, zone string, srcs []*source, need, limit int) []readyRange {
	var live []*source
	for _, s := range srcs {
		s.est, s.n = 0, 0
		if len(s.units) > 0 {
			live = append(live, s)
		}
	}
	c.shares(live, need)
	var plan []readyRange
	for len(plan)+2 <= maxListRanges {
		var best *source
		for _, s := range live {
			if len(s.units) == 0 || (s.n > 0 && s.est >= 2*s.share) || (s.batch == "" && s.n > 0 && len(c.batches) > 0) {
				continue
			}
			if best == nil || s.est*best.weight < best.est*s.weight {
				best = s
			}
		}
		if best == nil {
			break
		}
		u := best.units[0]
		best.units = best.units[1:]
		prefix := k.unitPrefix(zone, u)
		end := prefixEnd(prefix)
		from := c.next[u]
		if from <= prefix || from >= end {
			from = prefix
		}
		// Each range reads what the units before it are not expected to
		// give, and at least a quarter of the share, so that the listing
		// reads about what it needs when the counts hold. Keys this cursor
		// handed out are read but skipped: room for them too.
		room := c.held[u]
		if u.batch == "" {
			room = c.heldS[u.shard]
			for id := range c.batches { // the catch-all reads no batch told of
				room -= c.held[unit{shard: u.shard, batch: id}]
			}
		}
		base := max(best.share-best.est, best.share/4, 1)
		n := base + min(room, limit)
		switch {
		case u.batch == "" && len(c.batches) > 0:
			// The catch-all beside batches told of: the gaps between them,
			// from the cursor on, a few at a time.
			for range maxGaps {
				f, to := c.gap(k, zone, u.shard, from)
				plan = append(plan, readyRange{unit: u, from: f, to: to, gap: true, limit: n})
				if to == end || len(plan)+2 > maxListRanges {
					break
				}
				from = prefixEnd(to)
			}
		default:
			// From the cursor to the unit's end, then from its start back
			// to the cursor.
			plan = append(plan, readyRange{unit: u, from: from, to: end, limit: n})
			if from != prefix && !c.full[u] {
				plan = append(plan, readyRange{unit: u, from: prefix, to: from, wrap: true, limit: n})
			}
		}
		// What the range is expected to give: all it reads when the last
		// range of the unit stopped at its limit, what that one left
		// otherwise, and one key for a unit not seen yet (read it, and
		// the units after it).
		est := 1
		switch left, seen := c.found[u]; {
		case c.full[u]:
			est = base
		case seen:
			est = min(left, base)
		}
		best.est += est
		best.n++
	}
	return plan
}

// shares splits need between srcs by weight, as water fills vessels: a
// source expected to hold less than its part (by the last listing's
// counts) gets what it holds, and the rest goes to the others. A unit not
// seen yet, or whose last range stopped at its limit, may hold any
// number. What no source is expected to hold is split by weight.
func (c *ReadyCursor) shares(srcs []*source, need int) {
	capacity := make([]float64, len(srcs))
	for i, s := range srcs {
		for _, u := range s.units {
			n, seen := c.found[u]
			if c.full[u] || !seen {
				n = need
			}
			capacity[i] += float64(n)
		}
	}
	share := make([]float64, len(srcs))
	open := make([]bool, len(srcs))
	for i := range open {
		open[i] = true
	}
	rest := float64(need)
	for rest > 0.5 {
		weight := 0
		for i, s := range srcs {
			if open[i] {
				weight += s.weight
			}
		}
		if weight == 0 {
			break
		}
		filled := false
		for i, s := range srcs {
			if part := rest * float64(s.weight) / float64(weight); open[i] && capacity[i]-share[i] <= part {
				rest -= capacity[i] - share[i]
				share[i], open[i], filled = capacity[i], false, true
			}
		}
		if !filled {
			for i, s := range srcs {
				if open[i] {
					share[i] += rest * float64(s.weight) / float64(weight)
				}
			}
			rest = 0
		}
	}
	total := 0
	for _, s := range srcs {
		total += s.weight
	}
	for i, s := range srcs {
		if rest > 0.5 { // more asked than any source is expected to hold
			share[i] += rest * float64(s.weight) / float64(total)
		}
		s.share = max(1, int(math.Ceil(share[i])))
	}
}

// take hands out what plan's ranges found, up to limit in all, by the
// batches' weights, and moves each unit's cursor on.
func (c *ReadyCursor) take(k Keys, zone string, plan []readyRange, resp *clientv3.TxnResponse, out []Ready, bad []BadValue, limit int) ([]Ready, []BadValue) {
	type found struct {
		kv    *mvccpb.KeyValue
		shard int
	}
	avail := map[string][]found{}
	seen := map[string]bool{}
	for i, r := range plan {
		rr := resp.Responses[i].GetResponseRange()
		if !r.wrap && !r.gap {
			c.full[r.unit] = rr.More
		}
		shardPrefix := k.ReadyShard(zone, r.shard)
		for _, kv := range rr.Kvs {
			key := string(kv.Key)
			if _, taken := c.taken[key]; taken || seen[key] {
				continue // handed out already, or read by another range too
			}
			seen[key] = true
			b := batchOf(key, shardPrefix)
			avail[b] = append(avail[b], found{kv: kv, shard: r.shard})
		}
	}
	// Smooth weighted round robin: every batch with tasks found gains its
	// weight, the richest is served one task and pays the total. A batch
	// whose listing found nothing of it loses its credit, as a queue that
	// empties does in deficit round robin.
	eligible := slices.Sorted(maps.Keys(avail))
	maps.DeleteFunc(c.credit, func(b string, _ int) bool { return avail[b] == nil })
	weight := func(b string) int {
		if lb, ok := c.batches[b]; ok {
			return PriorityWeight(lb.Priority)
		}
		return PriorityWeight(PriorityNormal)
	}
	total := 0
	for _, b := range eligible {
		total += weight(b)
	}
	handed := map[string]bool{}
	for len(out) < limit && len(eligible) > 0 {
		pick := 0
		for i, b := range eligible {
			c.credit[b] += weight(b)
			if c.credit[b] > c.credit[eligible[pick]] {
				pick = i
			}
		}
		b := eligible[pick]
		c.credit[b] -= total
		for len(avail[b]) > 0 {
			f := avail[b][0]
			avail[b] = avail[b][1:]
			var t Task
			if err := decodeKV(f.kv, &t); err != nil {
				bad = append(bad, BadValue{KV: f.kv, Err: err})
				continue
			}
			key := string(f.kv.Key)
			out = append(out, Ready{Task: t, Key: key, ModRev: f.kv.ModRevision, value: f.kv.Value})
			handed[key] = true
			u := unit{shard: f.shard, batch: b}
			c.taken[key] = u
			c.held[u]++
			c.heldS[f.shard]++
			break
		}
		if len(avail[b]) == 0 {
			eligible = slices.Delete(eligible, pick, pick+1)
			total -= weight(b)
		}
	}
	// Each unit's ranges (its part after the cursor then the one before;
	// the catch-all's gaps, in order) are one walk: move the cursor along
	// it.
	for i := 0; i < len(plan); {
		j := i + 1
		for j < len(plan) && plan[j].unit == plan[i].unit {
			j++
		}
		r, ranges := plan[i], plan[i:j]
		var walk []*mvccpb.KeyValue
		for n := i; n < j; n++ {
			walk = append(walk, resp.Responses[n].GetResponseRange().Kvs...)
		}
		i = j
		left := 0
		for _, kv := range walk {
			if _, taken := c.taken[string(kv.Key)]; !taken {
				left++ // there for the next listing
			}
		}
		c.found[r.unit] = left
		switch {
		case r.gap:
			c.walkGaps(k, zone, ranges, resp.Responses[j-len(ranges):j], handed)
		case len(walk) == 0 && (r.from == k.unitPrefix(zone, r.unit) || len(ranges) > 1):
			c.empty[r.unit] = true // the whole unit was read
		case len(walk) == 0:
			// Nothing past the cursor, and the part before it was not
			// read: start there next time.
			delete(c.next, r.unit)
			c.full[r.unit] = false
		default:
			// Resume past the last key handed out, wherever it was.
			for _, kv := range walk {
				if handed[string(kv.Key)] {
					c.next[r.unit] = string(kv.Key) + "\x00"
				}
			}
		}
	}
	return out, bad
}

// walkGaps moves the catch-all's cursor along the gaps it read, in order:
// past each key handed out, stopping at the first one that was not (or
// at the end of a range that stopped at its limit); past a gap read to
// its end, on to the next, beyond the tasks of the batch that ends it,
// and back to the shard's start after the last gap.
func (c *ReadyCursor) walkGaps(k Keys, zone string, gaps []readyRange, resps []*etcdserverpb.ResponseOp, handed map[string]bool) {
	shardEnd := prefixEnd(k.ReadyShard(zone, gaps[0].shard))
	for i, g := range gaps {
		rr := resps[i].GetResponseRange()
		pos := g.from
		stop := rr.More
		for _, kv := range rr.Kvs {
			if !handed[string(kv.Key)] {
				stop = true
				break
			}
			pos = string(kv.Key) + "\x00"
		}
		switch {
		case stop:
			c.next[g.unit] = pos
			return
		case g.to == shardEnd:
			delete(c.next, g.unit)
			return
		default:
			c.next[g.unit] = prefixEnd(g.to) // g.to is a batch's prefix
		}
	}
}

// unitKVs is what range i of a listing read.
func (r readyRange) unitKVs(resp *clientv3.TxnResponse, i int) []*mvccpb.KeyValue {
	return resp.Responses[i].GetResponseRange().Kvs
}

// batchOf is the batch of a ready key under shardPrefix.
func batchOf(key, shardPrefix string) string {
	rest := strings.TrimPrefix(key, shardPrefix)
	b, _, _ := strings.Cut(rest, "/")
	return b
}

// Group is a set of tasks claimed together by one worker, under one claim
// key. Its methods are not safe for concurrent use: one goroutine of the
// worker (its committer) owns a group's bookkeeping.
type Group struct {
	ID       string
	Running  Running
	ClaimRev int64 // the claim key's create revision: the fencing token for completions
	done     map[int]bool
}

// Claim takes as many of ready (at most MaxClaim) as it can, as one group,
// in one transaction per round: every ready key must be unchanged since it
// was listed; then all are deleted, the group's claim key is put bound to
// lease, and its running record (the tasks, durable) is put beside it.
// When another worker took some, a read finds which are still there and
// the next round claims those. deadline gives each task's attempt
// deadline. It returns nil when nothing could be claimed.
func (q *Queue) Claim(ctx context.Context, lease clientv3.LeaseID, worker, group string, ready []Ready, now time.Time, deadline func(Task) time.Time) (*Group, error) {
	if len(ready) > MaxClaim {
		ready = ready[:MaxClaim]
	}
	claimKey, runKey := q.keys.Claim(group), q.keys.RunningGroup(group)
	for len(ready) > 0 {
		run := Running{Worker: worker, ClaimedAt: now.UTC()}
		cmps := make([]clientv3.Cmp, 0, len(ready)+1)
		then := make([]clientv3.Op, 0, len(ready)+2)
		run.Tasks = make([]Task, 0, len(ready))
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(claimKey), "=", 0))
		for _, r := range ready {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(r.Key), "=", r.ModRev)) // still ready, as listed
			then = append(then, clientv3.OpDelete(r.Key))
			run.Tasks = append(run.Tasks, r.Task)
			if d := deadline(r.Task); d.After(run.Deadline) {
				run.Deadline = d.UTC()
			}
		}
		then = append(then,
			clientv3.OpPut(claimKey, mustJSON(Claim{Worker: worker, ClaimedAt: run.ClaimedAt}), clientv3.WithLease(lease)),
			clientv3.OpPut(runKey, runningValue(run, ready)),
		)
		// No Else branch: etcd logs and applies the whole request, Else
		// included, and most claims succeed. A claim that fails reads
		// which keys changed afterwards instead.
		resp, err := q.txn(ctx, "claim").If(cmps...).Then(then...).Commit()
		if err != nil {
			return nil, fmt.Errorf("claim %d tasks: %w", len(ready), err)
		}
		if resp.Succeeded {
			return &Group{ID: group, Running: run, ClaimRev: resp.Header.Revision, done: map[int]bool{}}, nil
		}
		left, err := q.stillReady(ctx, claimKey, ready)
		if err != nil {
			return nil, fmt.Errorf("claim %d tasks: %w", len(ready), err)
		}
		if len(left) == len(ready) {
			return nil, fmt.Errorf("claim group %s: its claim key already exists; group IDs must be unique", group)
		}
		ready = left
	}
	return nil, nil
}

// stillReady returns those of ready whose key is still at the listed
// revision, after a claim of them failed. A key's mod revision only grows,
// so a key that failed the claim's compare fails it here too, and the
// next round is not tried with all of them again. When the claim key
// exists, which only a reused group ID explains, it returns ready whole.
func (q *Queue) stillReady(ctx context.Context, claimKey string, ready []Ready) ([]Ready, error) {
	ops := make([]clientv3.Op, 0, len(ready)+1)
	ops = append(ops, clientv3.OpGet(claimKey, clientv3.WithKeysOnly()))
	for _, r := range ready {
		ops = append(ops, clientv3.OpGet(r.Key, clientv3.WithKeysOnly()))
	}
	resp, err := q.txn(ctx, "read").Then(ops...).Commit()
	if err != nil {
		return nil, err
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
		return ready, nil
	}
	left := ready[:0]
	for i, r := range ready {
		kvs := resp.Responses[i+1].GetResponseRange().Kvs
		if len(kvs) == 1 && kvs[0].ModRevision == r.ModRev {
			left = append(left, r)
		}
	}
	return left, nil
}

// runningValue is mustJSON(run) with the JSON of each task as it was
// listed rather than encoded again: a claim writes every task it takes
// into its running record, and encoding them was a tenth of a worker's
// time. ready are run.Tasks, in order.
func runningValue(run Running, ready []Ready) string {
	tasks := run.Tasks
	run.Tasks = []Task{}
	head := mustJSON(run)
	const tail = `"tasks":[]}`
	if !strings.HasSuffix(head, tail) {
		run.Tasks = tasks
		return mustJSON(run)
	}
	var b strings.Builder
	b.WriteString(head[:len(head)-2])
	for i, r := range ready {
		if i > 0 {
			b.WriteByte(',')
		}
		if r.value != nil {
			b.Write(r.value)
		} else {
			b.WriteString(mustJSON(tasks[i]))
		}
	}
	b.WriteString("]}")
	return b.String()
}

// Outcome is what a worker reports for one task of a group: a final Result,
// or a Retry (the task's next attempt, with NotBefore set).
type Outcome struct {
	Group  *Group
	Index  int // the task's index in Group.Running.Tasks
	Result *Result
	Retry  *Task
	// GivenBack marks a Retry of a task that never started: the worker
	// gives it back on the same attempt.
	GivenBack bool
	// Drop ends the task in its group without writing anything: its batch
	// was deleted.
	Drop bool
}

// Commit records outcomes in as few transactions as it can. Each holds
// only while every group it touches still has the claim key this worker
// created (the compare that fences a zombie): it writes each result or
// delayed retry, and either updates the group's done set or, when the group
// is finished, deletes its claim and records. When a group's claim is gone,
// its outcomes are rejected and the others are committed without it. It
// returns the outcomes that were rejected.
func (q *Queue) Commit(ctx context.Context, outs []Outcome) (rejected []Outcome, err error) {
	for len(outs) > 0 {
		n, groups := q.fit(outs)
		batch := outs[:n]
		cmps := make([]clientv3.Cmp, 0, len(groups))
		els := make([]clientv3.Op, 0, len(groups))
		ops := make([]clientv3.Op, 0, n+3*len(groups))
		newDone := map[*Group]map[int]bool{}
		for _, g := range groups {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(q.keys.Claim(g.ID)), "=", g.ClaimRev)) // fenced on our claim
			els = append(els, clientv3.OpGet(q.keys.Claim(g.ID), clientv3.WithKeysOnly()))
			d := make(map[int]bool, len(g.done)+n)
			for i := range g.done {
				d[i] = true
			}
			newDone[g] = d
		}
		for _, o := range batch {
			t := o.Group.Running.Tasks[o.Index]
			switch {
			case o.Drop:
			case o.Retry != nil:
				ops = append(ops, clientv3.OpPut(q.keys.DelayedTask(t.Batch, t.ID), mustJSON(o.Retry)))
			default:
				ops = append(ops, clientv3.OpPut(q.keys.Result(t.Batch, t.ID), mustJSON(o.Result)))
			}
			newDone[o.Group][o.Index] = true
		}
		for _, g := range groups {
			if len(newDone[g]) == len(g.Running.Tasks) {
				ops = append(ops, clientv3.OpDelete(q.keys.Claim(g.ID)), clientv3.OpDelete(q.keys.RunningGroup(g.ID)), clientv3.OpDelete(q.keys.DoneGroup(g.ID)))
			} else {
				ops = append(ops, clientv3.OpPut(q.keys.DoneGroup(g.ID), encodeDone(newDone[g])))
			}
		}
		resp, err := q.txn(ctx, "commit").If(cmps...).Then(ops...).Else(els...).Commit()
		if err != nil {
			return rejected, err
		}
		if !resp.Succeeded {
			// Some group's claim is gone: drop its outcomes and try the rest.
			lost := map[*Group]bool{}
			for i, g := range groups {
				kvs := resp.Responses[i].GetResponseRange().Kvs
				if len(kvs) == 0 || kvs[0].CreateRevision != g.ClaimRev {
					lost[g] = true
				}
			}
			keep := make([]Outcome, 0, len(outs))
			for _, o := range outs {
				if lost[o.Group] {
					rejected = append(rejected, o)
				} else {
					keep = append(keep, o)
				}
			}
			outs = keep
			continue
		}
		for _, g := range groups {
			g.done = newDone[g]
		}
		outs = outs[n:]
	}
	return rejected, nil
}

// fit returns how many of outs fit in one transaction (one put per
// outcome, at most three operations per group) and the groups they touch.
func (q *Queue) fit(outs []Outcome) (int, []*Group) {
	var groups []*Group
	seen := map[*Group]bool{}
	owner := map[string]*Group{} // task -> the group whose outcome for it is in this transaction
	ops, bytes := 0, 0
	for i, o := range outs {
		t := o.Group.Running.Tasks[o.Index]
		task := t.Batch + "/" + t.ID
		extra := 1
		if !seen[o.Group] {
			extra += 3
		}
		// Outputs can be large: keep a transaction well under etcd's
		// 1.5 MiB request limit.
		size := o.size()
		if i > 0 && bytes+size > maxTxnBytes {
			return i, groups
		}
		bytes += size
		// A task in two groups (a zombie's late outcome and its re-claim's)
		// would write one key twice, which etcd refuses: the second outcome
		// starts the next transaction.
		if ops+extra > 128 || len(groups) >= 40 && !seen[o.Group] || owner[task] != nil && owner[task] != o.Group {
			return i, groups
		}
		owner[task] = o.Group
		if !seen[o.Group] {
			seen[o.Group] = true
			groups = append(groups, o.Group)
		}
		ops += extra
	}
	return len(outs), groups
}

// maxTxnBytes bounds the values one commit writes.
const maxTxnBytes = 1 << 20

// size estimates the bytes an outcome writes.
func (o Outcome) size() int {
	n := 1024
	var details map[string]string
	var hist []Attempt
	if o.Result != nil {
		n += len(o.Result.Message)
		details, hist = o.Result.Details, o.Result.History
	}
	if o.Retry != nil {
		hist = o.Retry.History
	}
	for _, v := range details {
		n += len(v)
	}
	for _, a := range hist {
		n += 256 + len(a.Message)
		for _, v := range a.Details {
			n += len(v)
		}
	}
	return n
}

func encodeDone(d map[int]bool) string {
	idx := make([]int, 0, len(d))
	for i := range d {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var b strings.Builder
	for j, i := range idx {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// Finished reports whether every task of the group has an outcome committed.
func (g *Group) Finished() bool { return len(g.done) == len(g.Running.Tasks) }

// Release gives a group's unfinished tasks back at once (a draining
// worker): it deletes the claim and marks the group released, and the
// scheduler requeues what the group had not finished without waiting for
// the lease to expire and without counting the attempt, since the worker
// gave the tasks back rather than lost them. It reports whether the claim
// was still this worker's.
func (q *Queue) Release(ctx context.Context, g *Group) (bool, error) {
	resp, err := q.txn(ctx, "release").
		If(clientv3.Compare(clientv3.CreateRevision(q.keys.Claim(g.ID)), "=", g.ClaimRev)).
		Then(clientv3.OpDelete(q.keys.Claim(g.ID)), clientv3.OpPut(q.keys.DoneGroup(g.ID), releasedMark+encodeDone(g.done))).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Reconcile finds out what landed of outcomes whose commit failed with an
// unknown outcome (a deadline, a lost connection): a commit puts each
// outcome and its group's done set in one transaction, so the done set
// says exactly which landed. For each group whose claim is still this
// worker's, the outcomes it has done are returned as landed and the
// group's done set is brought up to date; the rest are returned as
// pending, to be committed again under the same fence. Outcomes of groups whose claim is
// gone are returned apart: either a commit of them finished the group, or
// the claim was revoked or its lease expired and the leader recovers the
// group; neither needs the worker. No other commit of these groups may be
// in flight.
func (q *Queue) Reconcile(ctx context.Context, outs []Outcome) (landed, pending, gone []Outcome, err error) {
	var groups []*Group
	seen := map[*Group]bool{}
	for _, o := range outs {
		if !seen[o.Group] {
			seen[o.Group] = true
			groups = append(groups, o.Group)
		}
	}
	ours := map[*Group]bool{}
	for len(groups) > 0 {
		chunk := groups[:min(len(groups), maxListRanges/2)]
		groups = groups[len(chunk):]
		ops := make([]clientv3.Op, 0, 2*len(chunk))
		for _, g := range chunk {
			ops = append(ops, clientv3.OpGet(q.keys.Claim(g.ID), clientv3.WithKeysOnly()), clientv3.OpGet(q.keys.DoneGroup(g.ID)))
		}
		resp, err := q.txn(ctx, "reconcile").Then(ops...).Commit()
		if err != nil {
			return nil, nil, nil, err
		}
		for i, g := range chunk {
			claims := resp.Responses[2*i].GetResponseRange().Kvs
			if len(claims) == 0 || claims[0].CreateRevision != g.ClaimRev {
				continue
			}
			ours[g] = true
			g.done = parseDone(resp.Responses[2*i+1].GetResponseRange().Kvs)
		}
	}
	for _, o := range outs {
		switch {
		case !ours[o.Group]:
			gone = append(gone, o)
		case o.Group.done[o.Index]:
			landed = append(landed, o)
		default:
			pending = append(pending, o)
		}
	}
	return landed, pending, gone, nil
}

// Landed sorts outcomes whose group's claim is gone (Reconcile's gone)
// into those that landed before the claim went, and those the fence
// rejected or would have: a result (or a delayed retry) stored by this
// worker for the same attempt is the outcome's own. A dropped outcome
// writes nothing, and counts as landed.
func (q *Queue) Landed(ctx context.Context, outs []Outcome, worker string) (landed, rejected []Outcome, err error) {
	for len(outs) > 0 {
		chunk := outs[:min(len(outs), EtcdMaxTxnOps)]
		outs = outs[len(chunk):]
		ops := make([]clientv3.Op, len(chunk))
		for i, o := range chunk {
			t := o.Group.Running.Tasks[o.Index]
			key := q.keys.Result(t.Batch, t.ID)
			if o.Retry != nil {
				key = q.keys.DelayedTask(t.Batch, t.ID)
			}
			ops[i] = clientv3.OpGet(key)
		}
		resp, err := q.txn(ctx, "read").Then(ops...).Commit()
		if err != nil {
			return nil, nil, err
		}
		for i, o := range chunk {
			if o.Drop {
				landed = append(landed, o)
				continue
			}
			kvs := resp.Responses[i].GetResponseRange().Kvs
			ours := false
			if len(kvs) == 1 {
				t := o.Group.Running.Tasks[o.Index]
				if o.Retry != nil {
					var d Task
					ours = decodeKV(kvs[0], &d) == nil && d.Attempt == o.Retry.Attempt
				} else {
					var r Result
					ours = decodeKV(kvs[0], &r) == nil && r.Worker == worker && r.Attempts == t.Attempt
				}
			}
			if ours {
				landed = append(landed, o)
			} else {
				rejected = append(rejected, o)
			}
		}
	}
	return landed, rejected, nil
}

// releasedMark starts the done set of a group its worker gave back.
const releasedMark = "released:"

// Adopt re-reads a group whose claim transaction had an unknown outcome
// (its context ended before the reply): the group as committed if its
// claim key exists, nil if the claim did not land. Group IDs are unique to
// the claiming session, so a claim key found is this worker's.
func (q *Queue) Adopt(ctx context.Context, group string) (*Group, error) {
	claimKey, runKey := q.keys.Claim(group), q.keys.RunningGroup(group)
	resp, err := q.txn(ctx, "adopt").Then(clientv3.OpGet(claimKey), clientv3.OpGet(runKey)).Commit()
	if err != nil {
		return nil, err
	}
	claims, runs := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(claims) == 0 || len(runs) == 0 {
		return nil, nil
	}
	var run Running
	if err := decodeKV(runs[0], &run); err != nil {
		return nil, err
	}
	return &Group{ID: group, Running: run, ClaimRev: claims[0].CreateRevision, done: map[int]bool{}}, nil
}

// QuarantineReady moves a malformed ready value aside and ends its task
// dead with the reason, so that no worker trips over it again.
func (q *Queue) QuarantineReady(ctx context.Context, b BadValue) error {
	_, _, batch, task, err := q.keys.ParseReady(b.Key())
	if err != nil {
		return q.quarantine(ctx, Fence{}, b.KV, err)
	}
	_, err = q.txn(ctx, "quarantine").
		If(clientv3.Compare(clientv3.ModRevision(b.Key()), "=", b.KV.ModRevision),
			clientv3.Compare(clientv3.CreateRevision(q.keys.Result(batch, task)), "=", 0)).
		Then(
			clientv3.OpDelete(b.Key()),
			clientv3.OpPut(q.keys.Quarantine(b.Key()), mustJSON(map[string]string{"value": string(b.KV.Value), "error": b.Err.Error()})),
			clientv3.OpPut(q.keys.Result(batch, task), mustJSON(Result{Host: task, Status: StatusDead, FinishedAt: time.Now().UTC(),
				Message: "task record is malformed and was quarantined under " + q.keys.Quarantine(b.Key()) + ": " + b.Err.Error()})),
		).
		Commit()
	return err
}

// Jitter returns a random duration in [0, n), for backoff.
func Jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n)
}
