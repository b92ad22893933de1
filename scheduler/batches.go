package scheduler

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/patrol-dev/patrol/queue"
)

// batch is what the leader knows of one active batch. The registry owns
// it; duties read copies (registry.snapshot) and change it through
// registry.update.
type batch struct {
	spec     queue.BatchSpec
	loaded   bool // spec, stop and cancel state read
	sharded  bool // every host has a task
	sharding bool // the sharding duty is on it
	stopping bool // a stop was decided and runs: release no more
	stopped  bool // pending tasks were ended (cancel, max failures)
	finished bool // the summary is written
	cancel   bool // a cancel was requested
	retried  bool // a pending retry request was carried out this term
	rounds   int  // retry rounds this term ran: held tasks may be back
	// results follows the batch's results from when it is loaded: the
	// duties count from it, never by reading the results again.
	results  *queue.ResultTally
	unfollow context.CancelFunc
	// moved is when the result count last changed (or the batch was
	// loaded): retention looks for lost tasks only in batches that stopped
	// moving.
	moved time.Time
}

// registry is the set of active batches, shared by the duties of one
// term. It follows the active-batch index and cancel requests, loads each
// new batch and follows its results; every change wakes every duty.
type registry struct {
	l *leader

	mu      sync.Mutex
	active  map[string]*batch
	wakes   []chan struct{}
	loading chan struct{} // wakes the loader

	following sync.WaitGroup // the batches' result tallies
}

func newRegistry(l *leader) *registry {
	return &registry{l: l, active: map[string]*batch{}, loading: make(chan struct{}, 1)}
}

// subscribe returns a channel that receives (coalesced) each change to
// the registry: a batch added, loaded, sharded, stopped, or its results
// moved. Call it before the term's goroutines start.
func (r *registry) subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	r.wakes = append(r.wakes, ch)
	return ch
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// changed wakes every duty.
func (r *registry) changed() {
	for _, ch := range r.wakes {
		poke(ch)
	}
}

// snapshot returns a copy of every active batch, sorted by ID.
func (r *registry) snapshot() []batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]batch, 0, len(r.active))
	for _, id := range slices.Sorted(maps.Keys(r.active)) {
		out = append(out, *r.active[id])
	}
	return out
}

// get returns a copy of one active batch.
func (r *registry) get(id string) (batch, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.active[id]
	if !ok {
		return batch{}, false
	}
	return *b, true
}

// update changes an active batch under the registry's lock; it reports
// whether the batch is still active.
func (r *registry) update(id string, f func(*batch)) bool {
	r.mu.Lock()
	b, ok := r.active[id]
	if ok {
		f(b)
	}
	r.mu.Unlock()
	return ok
}

// onActive follows the active-batch index.
func (r *registry) onActive(ev queue.Event) {
	l := r.l
	id, err := l.s.q.Keys().ParseActive(string(ev.KV.Key))
	if err != nil {
		l.log.Warn().Err(err).Msg("ignoring malformed active-batch key")
		return
	}
	r.mu.Lock()
	if ev.Delete {
		if b, ok := r.active[id]; ok && b.unfollow != nil {
			b.unfollow()
		}
		delete(r.active, id)
	} else if _, ok := r.active[id]; !ok {
		r.active[id] = &batch{}
	}
	r.mu.Unlock()
	poke(r.loading)
	r.changed()
}

// onCancel follows cancel requests.
func (r *registry) onCancel(ev queue.Event) {
	if ev.Delete {
		return
	}
	id := string(ev.KV.Key)[len(r.l.s.q.Keys().Cancels()):]
	if r.update(id, func(b *batch) { b.cancel = true }) {
		r.changed()
	}
}

// load reads the spec and state of every batch not loaded yet, and starts
// following its results, whenever the active set changes, until ctx
// ends. A batch that fails to load is tried again a second later.
func (r *registry) load(ctx context.Context) {
	defer r.following.Wait()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		for _, id := range r.unloaded() {
			if ctx.Err() != nil {
				return
			}
			err := r.loadOne(ctx, id)
			if !r.l.check(err, "load batch", batchField(id)) && errors.Is(err, queue.ErrNotLeader) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.loading:
		case <-retry.C:
		}
	}
}

// unloaded returns the IDs of the active batches not loaded yet.
func (r *registry) unloaded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, b := range r.active {
		if !b.loaded {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// loadOne reads a batch's spec, whether it was stopped and whether a
// cancel was requested before this term saw it, and starts following its
// results.
func (r *registry) loadOne(ctx context.Context, id string) error {
	q := r.l.s.q
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	st, err := q.LoadBatchState(cctx, id)
	if err != nil {
		return err
	}
	fctx, unfollow := context.WithCancel(ctx)
	t := q.FollowResults(id, func(int) {
		r.update(id, func(b *batch) { b.moved = time.Now() })
		r.changed()
	})
	if !r.update(id, func(b *batch) {
		b.spec, b.loaded, b.stopped, b.cancel = st.Spec, true, st.Stop != "", b.cancel || st.Cancelled
		b.results, b.unfollow, b.moved = t, unfollow, time.Now()
	}) {
		unfollow() // deleted meanwhile
		return nil
	}
	r.following.Go(func() { t.Run(fctx) })
	r.changed()
	return nil
}
