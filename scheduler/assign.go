package scheduler

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/queue"
)

// assignDuty spreads each zone's shards over its live workers
// (<prefix>/assign/<zone>), writing an assignment only when it changed. It
// follows the worker registrations, and the active batches for their
// zones and shard counts, and counts the leases of workers that went
// without stopping cleanly.
type assignDuty struct {
	l    *leader
	wake <-chan struct{} // the registry's
	poke chan struct{}   // a worker came or went

	mu      sync.Mutex
	workers map[string]string // live worker ID -> zone
	leaving map[string]bool   // workers that said they are stopping cleanly
	written map[string]string // zone -> the assignment this term last wrote
}

func newAssignDuty(l *leader) *assignDuty {
	return &assignDuty{l: l, wake: l.batches.subscribe(), poke: make(chan struct{}, 1),
		workers: map[string]string{}, leaving: map[string]bool{}, written: map[string]string{}}
}

func (d *assignDuty) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	q := d.l.s.q
	wg.Go(func() { q.Sync(ctx, q.Keys().Workers(), time.Minute, d.reset, d.onWorker) })
	wake := make(chan struct{}, 1)
	wg.Go(func() { // either source wakes the loop
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
			case <-d.poke:
			}
			poke(wake)
		}
	})
	every(ctx, time.Second, wake, func() { d.assign(ctx) })
}

// onWorker follows worker registrations.
func (d *assignDuty) onWorker(ev queue.Event) {
	l := d.l
	id := string(ev.KV.Key)[len(l.s.q.Keys().Workers()):]
	d.mu.Lock()
	if ev.Delete {
		// A worker that stops cleanly says so before it revokes its
		// lease; any other registration that goes, went with its lease.
		zone, known := d.workers[id]
		if known && !d.leaving[id] {
			l.s.m.LeaseExpirations.Inc()
			l.log.Warn().Str("worker_id", id).Str("zone", zone).Msg("worker lease expired: the worker stopped without revoking it; its claims are requeued")
		}
		delete(d.workers, id)
		delete(d.leaving, id)
	} else {
		var w queue.WorkerInfo
		if err := json.Unmarshal(ev.KV.Value, &w); err == nil {
			d.workers[id] = w.Zone
			if w.Stopping {
				d.leaving[id] = true
			}
		}
	}
	d.mu.Unlock()
	poke(d.poke)
}

func (d *assignDuty) reset() {
	d.mu.Lock()
	clear(d.workers)
	clear(d.leaving)
	d.mu.Unlock()
}

// assign writes each zone's assignment where it changed.
func (d *assignDuty) assign(ctx context.Context) {
	l := d.l
	shards := map[string]int{}
	for _, b := range l.batches.snapshot() {
		for _, z := range b.spec.Zones {
			shards[z] = max(shards[z], b.spec.Shards, queue.DefaultShards)
		}
	}
	d.mu.Lock()
	byZone := map[string][]string{}
	for id, z := range d.workers {
		if d.leaving[id] {
			continue // stopping: its shards go to the others now
		}
		byZone[z] = append(byZone[z], id)
		shards[z] = max(shards[z], queue.DefaultShards)
	}
	want := map[string]queue.Assignment{}
	for z, n := range shards {
		ids := byZone[z]
		slices.Sort(ids)
		a := queue.Assign(n, ids)
		if string(mustJSON(a)) != d.written[z] {
			want[z] = a
		}
	}
	d.mu.Unlock()
	for z, a := range want {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := l.s.q.SetAssignment(cctx, l.fence, z, a)
		cancel()
		if !l.check(err, "assign shards", func(e *zerolog.Event) *zerolog.Event { return e.Str("zone", z) }) {
			return
		}
		d.mu.Lock()
		d.written[z] = string(mustJSON(a))
		d.mu.Unlock()
		l.log.Info().Str("zone", z).Int("shards", a.Shards).Int("workers", len(a.Workers)).Msg("shards assigned")
	}
}
