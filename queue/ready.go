package queue

import (
	"context"
	"maps"
	"math"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

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
// unit's range just after the last key listed there. The part of a unit
// behind the cursor (its tombstones, and any task made ready there again)
// is read at most once per Reset: a wake from sharding, which adds tasks
// everywhere in a unit while workers drain it, calls ResetAhead instead,
// and the unit is read from the cursor on only. Otherwise every wake made
// every worker walk the tombstones of every unit it had drained, once per
// sharding transaction, and at a million hosts those walks were most of
// etcd's work. The cursor remembers the units a listing found empty and
// skips them until a reset, and how many keys each unit held, so that a
// listing reads only as many units as it likely needs. Keys it has listed are not listed
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
	gen   int             // Resets so far
	swept map[unit]int    // unit -> the gen its part behind the cursor was last read in

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
		taken: map[string]unit{}, held: map[unit]int{}, heldS: map[int]int{}, swept: map[unit]int{},
		batches: map[string]ListBatch{}, credit: map[string]int{}, gen: 1}
}

// Reset makes the next listings look at every unit again, each once
// behind its cursor too. Call it when tasks may have become ready
// anywhere (the leader bumps Keys.Wake in every transaction that makes a
// task ready), and now and then in any case.
func (c *ReadyCursor) Reset() {
	clear(c.empty)
	c.gen++
}

// ResetAhead makes the next listing look at every unit again from its
// cursor on, without reading behind it: for a wake from sharding
// (WakeSharded), whose tasks the cursors find ahead of them as they go
// and, behind them, at the next Reset (the last transaction of each
// sharding lane wakes for a Reset).
func (c *ReadyCursor) ResetAhead() { clear(c.empty) }

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
	for _, m := range []map[unit]int{c.found, c.swept} {
		maps.DeleteFunc(m, func(u unit, _ int) bool { return c.gone(u) })
	}
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
			// From the cursor to the unit's end, then, once per Reset,
			// from its start back to the cursor.
			plan = append(plan, readyRange{unit: u, from: from, to: end, limit: n})
			if from != prefix && !c.full[u] && c.swept[u] < c.gen {
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
	defer func(bound int) {
		// Batches come and go between listings: keep what they carry over
		// within one round's worth.
		for b, v := range c.credit {
			c.credit[b] = min(max(v, -bound), bound)
		}
	}(total)
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
		// A unit read from its start, or behind its cursor too, is swept
		// for this Reset; read behind the cursor again before the next
		// while it holds tasks this listing could not hand out.
		if !r.gap && (r.from == k.unitPrefix(zone, r.unit) || len(ranges) > 1) {
			c.swept[r.unit] = c.gen
		}
		for n := j - len(ranges); n < j; n++ {
			if !plan[n].wrap {
				continue
			}
			rr := resp.Responses[n].GetResponseRange()
			more := rr.More
			for _, kv := range rr.Kvs {
				if _, taken := c.taken[string(kv.Key)]; !taken {
					more = true
				}
			}
			if more {
				c.swept[r.unit] = c.gen - 1
			}
		}
		switch {
		case r.gap:
			c.walkGaps(k, zone, ranges, resp.Responses[j-len(ranges):j], handed)
		case len(walk) == 0:
			// Nothing past the cursor, nor before it if that was read
			// (else it is, after the next Reset): the cursor stays.
			c.empty[r.unit] = true
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

// batchOf is the batch of a ready key under shardPrefix.
func batchOf(key, shardPrefix string) string {
	rest := strings.TrimPrefix(key, shardPrefix)
	b, _, _ := strings.Cut(rest, "/")
	return b
}
