package queue

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WorkerInfo is a live worker's registration at Keys.Worker, attached to
// its lease: it disappears when the worker does.
type WorkerInfo struct {
	ID        string    `json:"id"`
	Zone      string    `json:"zone"`
	Capacity  int       `json:"capacity"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	// Stopping is set, just before the worker revokes its lease, by a
	// worker stopping cleanly: the leader then knows the registration's
	// end is not a lease expiry.
	Stopping bool `json:"stopping,omitempty"`
}

// LiveWorker is a registration as read back, with its lease.
type LiveWorker struct {
	WorkerInfo
	Lease clientv3.LeaseID `json:"-"`
}

// Register records a worker under its lease.
func (q *Queue) Register(ctx context.Context, lease clientv3.LeaseID, w WorkerInfo) error {
	start := time.Now()
	_, err := q.cli.Put(ctx, q.keys.Worker(w.ID), mustJSON(w), clientv3.WithLease(lease))
	q.observe("register", start, err)
	return err
}

// Workers lists live workers, sorted by ID. Registrations that do not
// decode are skipped.
func (q *Queue) Workers(ctx context.Context) ([]LiveWorker, error) {
	var out []LiveWorker
	_, err := q.rangeAll(ctx, q.keys.Workers(), func(kv *mvccpb.KeyValue) error {
		var w WorkerInfo
		if decodeKV(kv, &w) == nil {
			out = append(out, LiveWorker{WorkerInfo: w, Lease: clientv3.LeaseID(kv.Lease)})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b LiveWorker) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, err
}

// Assignment spreads a zone's shards over its live workers: each worker
// claims from its own shards first and from the zone's others when idle.
type Assignment struct {
	Shards  int              `json:"shards"`  // shards in use in the zone
	Workers map[string][]int `json:"workers"` // worker ID -> its shards
}

// Assign computes a balanced assignment: shard i goes to the i-th worker
// in ID order, round robin, so that each has shards/workers or one more.
func Assign(shards int, workers []string) Assignment {
	a := Assignment{Shards: shards, Workers: map[string][]int{}}
	if len(workers) == 0 {
		return a
	}
	for s := 0; s < shards; s++ {
		w := workers[s%len(workers)]
		a.Workers[w] = append(a.Workers[w], s)
	}
	return a
}

// SetAssignment writes a zone's assignment if it changed, fenced.
func (q *Queue) SetAssignment(ctx context.Context, fence Fence, zone string, a Assignment) (bool, error) {
	key := q.keys.Assignment(zone)
	val := mustJSON(a)
	cur, err := q.cli.Get(ctx, key)
	if err != nil {
		return false, err
	}
	if len(cur.Kvs) == 1 && string(cur.Kvs[0].Value) == val {
		return false, nil
	}
	resp, err := q.txn(ctx, "assign").
		If(fence.Cmp(), clientv3.Compare(clientv3.ModRevision(key), "=", modRev(cur.Kvs))).
		Then(clientv3.OpPut(key, val)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, q.fenceLost(ctx, fence, resp.Succeeded)
}

// DecodeAssignment reads an assignment value.
func DecodeAssignment(b []byte) (Assignment, error) {
	var a Assignment
	err := json.Unmarshal(b, &a)
	return a, err
}

// ShardOrder is the order in which a worker tries a zone's shards: its own
// first, then the others, starting at offset so that idle workers spread.
func (a Assignment) ShardOrder(worker string, offset int) []int {
	n := max(a.Shards, DefaultShards)
	own := a.Workers[worker]
	order := make([]int, 0, n)
	order = append(order, own...)
	for i := 0; i < n; i++ {
		s := (offset + i) % n
		if !slices.Contains(own, s) {
			order = append(order, s)
		}
	}
	return order
}

// ZoneState is how a batch stands in one zone.
type ZoneState struct {
	Pending int `json:"pending"` // ready to claim, not counting tasks waiting out a backoff
	Workers int `json:"workers"` // live workers in the zone
}

// ZoneStatus counts, per zone of a batch, its ready tasks and the zone's
// live workers: a zone with pending work and no worker is a stall an
// operator must see.
func (q *Queue) ZoneStatus(ctx context.Context, batch string) (map[string]ZoneState, error) {
	spec, err := q.LoadBatch(ctx, batch)
	if err != nil {
		return nil, err
	}
	workers, err := q.Workers(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]ZoneState{}
	for _, w := range workers {
		z := out[w.Zone]
		z.Workers++
		out[w.Zone] = z
	}
	// One count per shard of each zone, up to maxListRanges to a round
	// trip: a large batch has up to MaxShards shards.
	type unitOf struct{ zone, prefix string }
	var units []unitOf
	for _, zone := range spec.Zones {
		out[zone] = out[zone] // a zone with no pending task is still shown
		for s := 0; s < spec.Shards; s++ {
			units = append(units, unitOf{zone, q.keys.ReadyBatchShard(zone, s, batch)})
		}
	}
	for len(units) > 0 {
		part := units[:min(len(units), maxListRanges)]
		units = units[len(part):]
		ops := make([]clientv3.Op, len(part))
		for i, u := range part {
			ops[i] = clientv3.OpGet(u.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		}
		resp, err := q.txn(ctx, "read").Then(ops...).Commit()
		if err != nil {
			return nil, err
		}
		for i, u := range part {
			z := out[u.zone]
			z.Pending += int(resp.Responses[i].GetResponseRange().Count)
			out[u.zone] = z
		}
	}
	return out, nil
}

// ZoneCounts tallies a batch's hosts by zone and status.
func (q *Queue) ZoneCounts(ctx context.Context, batch string) (map[string]Counts, error) {
	spec, err := q.LoadBatch(ctx, batch)
	if err != nil {
		return nil, err
	}
	hosts, err := q.LoadHosts(ctx, spec)
	if err != nil {
		return nil, err
	}
	zoneOf := make(map[string]string, len(hosts))
	for _, h := range hosts {
		zoneOf[h.Name] = ZoneOf(h)
	}
	rows, _, err := q.Results(ctx, batch)
	if err != nil {
		return nil, err
	}
	out := map[string]Counts{}
	for _, r := range rows {
		z := zoneOf[r.Host]
		if out[z] == nil {
			out[z] = Counts{}
		}
		out[z][r.Status]++
	}
	return out, nil
}
