package scheduler

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// maxSharding is how many batches are sharded at once. A batch is sharded
// in up to 8 lanes of transactions; more batches at once would only queue
// behind each other in etcd.
const maxSharding = 4

// shardDuty writes each loaded batch's tasks (queue.Queue.Shard),
// resumably, each batch on a goroutine of its own, smallest first: a
// ten-host batch submitted while a million hosts are being sharded starts
// at once.
type shardDuty struct {
	l    *leader
	wake <-chan struct{}
	sem  chan struct{}
	wg   sync.WaitGroup
}

func newShardDuty(l *leader) *shardDuty {
	return &shardDuty{l: l, wake: l.batches.subscribe(), sem: make(chan struct{}, maxSharding)}
}

func (d *shardDuty) run(ctx context.Context) {
	defer d.wg.Wait()
	every(ctx, time.Second, d.wake, func() { d.start(ctx) })
}

// start begins sharding the batches that need it, as slots allow.
func (d *shardDuty) start(ctx context.Context) {
	var todo []batch
	for _, b := range d.l.batches.snapshot() {
		if b.loaded && !b.sharded && !b.sharding {
			todo = append(todo, b)
		}
	}
	slices.SortFunc(todo, func(a, b batch) int { return cmp.Compare(a.spec.Hosts, b.spec.Hosts) })
	for _, b := range todo {
		select {
		case d.sem <- struct{}{}:
		default:
			return // every slot busy: the next pass, when one frees, takes it
		}
		id := b.spec.ID
		if !d.l.batches.update(id, func(b *batch) { b.sharding = true }) {
			<-d.sem
			continue
		}
		d.wg.Go(func() {
			defer func() { <-d.sem; d.l.batches.changed() }()
			d.shard(ctx, b)
		})
	}
}

// shardHook, when a test sets it, runs before each batch is sharded: a
// test holds one batch's sharding there to show that the others go on.
var shardHook func(ctx context.Context, batch string)

// shard shards one batch, bounded by the leader's context.
func (d *shardDuty) shard(ctx context.Context, b batch) {
	if shardHook != nil {
		shardHook(ctx, b.spec.ID)
	}
	start := time.Now()
	// Sharding a large batch takes many transactions: its own deadline.
	sctx, cancel := context.WithTimeout(ctx, time.Hour)
	err := d.l.s.q.Shard(sctx, d.l.fence, b.spec)
	cancel()
	id := b.spec.ID
	d.l.batches.update(id, func(b *batch) { b.sharding, b.sharded = false, err == nil })
	if !d.l.check(err, "shard", batchField(id)) {
		return
	}
	d.l.log.Info().Str("batch_id", id).Int("hosts", b.spec.Hosts).Dur("took", time.Since(start)).Msg("batch sharded")
}
