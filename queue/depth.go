package queue

import (
	"context"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Depth is how much work waits or runs, per zone: what on-call graphs and
// alerts on. It is read from etcd in a handful of range requests, keys only
// wherever the key says enough.
type Depth struct {
	// Revision is etcd's revision when the reading began.
	Revision int64
	// Zones holds every zone with work or live workers.
	Zones map[string]*ZoneDepth
	// ActiveBatches counts batches not yet finished.
	ActiveBatches int
}

// ZoneDepth is one zone's share of a Depth.
type ZoneDepth struct {
	Pending  int // claimable now
	Retrying int // waiting out a retry backoff
	Held     int // held back by a batch's --parallel cap
	Running  int // claimed, not yet finished
	Workers  int // live worker leases
	// OldestPendingRev is the mod revision of the zone's oldest claimable
	// task: the revision at which it became claimable (0: none pending).
	OldestPendingRev int64
}

func (d *Depth) zone(name string) *ZoneDepth {
	z := d.Zones[name]
	if z == nil {
		z = &ZoneDepth{}
		d.Zones[name] = z
	}
	return z
}

// Depth reads the queue's depth, every state at the revision the ready
// listing began at (workers at the current one). spec returns a batch's spec (callers
// cache them: specs never change); retrying and held tasks of a batch in a
// single zone are counted without reading their values.
func (q *Queue) Depth(ctx context.Context, spec func(ctx context.Context, batch string) (BatchSpec, error)) (Depth, error) {
	d := Depth{Zones: map[string]*ZoneDepth{}}
	// Windowed: paged to the prefix's end, etcd would count every key
	// left at each page, and a million pending tasks cost minutes.
	rev, err := q.rangeSplit(ctx, q.keys.Ready(), func(kv *mvccpb.KeyValue) error {
		zone, _, _, _, err := q.keys.ParseReady(string(kv.Key))
		if err != nil {
			return nil // malformed keys are the claim path's to quarantine
		}
		z := d.zone(zone)
		z.Pending++
		if z.OldestPendingRev == 0 || kv.ModRevision < z.OldestPendingRev {
			z.OldestPendingRev = kv.ModRevision
		}
		return nil
	}, clientv3.WithKeysOnly())
	if err != nil {
		return Depth{}, err
	}
	d.Revision = rev

	workers, err := q.Workers(ctx)
	if err != nil {
		return Depth{}, err
	}
	for _, w := range workers {
		d.zone(w.Zone).Workers++
	}

	if err := q.depthRunning(ctx, &d, rev); err != nil {
		return Depth{}, err
	}

	var batches []string
	if _, err := q.rangeAllAt(ctx, q.keys.Active(), rev, func(kv *mvccpb.KeyValue) error {
		if b, err := q.keys.ParseActive(string(kv.Key)); err == nil {
			batches = append(batches, b)
		}
		return nil
	}, clientv3.WithKeysOnly()); err != nil {
		return Depth{}, err
	}
	d.ActiveBatches = len(batches)
	for _, b := range batches {
		s, err := spec(ctx, b)
		if err != nil {
			continue // not committed yet, purged meanwhile, or malformed: the scheduler reports those
		}
		for _, part := range []struct {
			prefix string
			count  func(*ZoneDepth) *int
		}{
			{q.keys.BatchDelayed(b), func(z *ZoneDepth) *int { return &z.Retrying }},
			{q.keys.BatchHeld(b), func(z *ZoneDepth) *int { return &z.Held }},
		} {
			if err := q.depthWaiting(ctx, &d, rev, s, part.prefix, part.count); err != nil {
				return Depth{}, err
			}
		}
	}
	return d, nil
}

// depthWaiting counts the tasks under prefix into their zones: by count
// alone when the batch has one zone, else by reading each task's zone.
func (q *Queue) depthWaiting(ctx context.Context, d *Depth, rev int64, s BatchSpec, prefix string, count func(*ZoneDepth) *int) error {
	if len(s.Zones) == 1 {
		n, err := q.count(ctx, prefix, clientv3.WithRev(rev))
		if err != nil {
			return err
		}
		if n > 0 {
			*count(d.zone(s.Zones[0])) += int(n)
		}
		return nil
	}
	_, err := q.rangeAllAt(ctx, prefix, rev, func(kv *mvccpb.KeyValue) error {
		var t Task
		if decodeKV(kv, &t) == nil {
			*count(d.zone(t.Zone))++
		}
		return nil
	})
	return err
}

// depthRunning counts claimed tasks not yet finished, by zone, at rev.
func (q *Queue) depthRunning(ctx context.Context, d *Depth, rev int64) error {
	done := map[string]int{} // group → finished tasks; -1: released
	if _, err := q.rangeAllAt(ctx, q.keys.Done(), rev, func(kv *mvccpb.KeyValue) error {
		g, err := q.keys.ParseGroup(string(kv.Key))
		if err != nil {
			return nil
		}
		if strings.HasPrefix(string(kv.Value), releasedMark) {
			done[g] = -1
		} else {
			done[g] = len(parseDone([]*mvccpb.KeyValue{kv}))
		}
		return nil
	}); err != nil {
		return err
	}
	_, err := q.rangeAllAt(ctx, q.keys.Running(), rev, func(kv *mvccpb.KeyValue) error {
		g, err := q.keys.ParseGroup(string(kv.Key))
		if err != nil || done[g] < 0 {
			return nil
		}
		var r Running
		if decodeKV(kv, &r) != nil || len(r.Tasks) == 0 {
			return nil
		}
		// A group's tasks are claimed from one zone's queue.
		if n := len(r.Tasks) - done[g]; n > 0 {
			d.zone(r.Tasks[0].Zone).Running += n
		}
		return nil
	})
	return err
}
