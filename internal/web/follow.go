package web

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// sampleEvery is how stale the running and retrying counts (and a
// finishing batch's summary) may be: each is read at most this often per
// server (running, one range for every batch) or per batch (the others),
// however many clients ask.
const sampleEvery = time.Second

// hub keeps one follower per batch that clients ask about, and the
// server-wide sample of running tasks.
type hub struct {
	q       *queue.Queue
	log     zerolog.Logger
	idle    time.Duration
	metrics *metrics.Web

	mu        sync.Mutex
	ctx       context.Context // Run's; nil until it runs
	followers map[string]*follower
	wg        sync.WaitGroup

	running sampled[map[string][]queue.RunningTask]
}

func newHub(q *queue.Queue, log zerolog.Logger, idle time.Duration, m *metrics.Web) *hub {
	return &hub{q: q, log: log, idle: idle, metrics: m, followers: map[string]*follower{}}
}

// errNotRunning is a request made before Run or after it returned.
var errNotRunning = errors.New("web: the server is not running (Run)")

// run lets followers start, stops idle ones, and stops every one when
// ctx ends.
func (h *hub) run(ctx context.Context) {
	h.mu.Lock()
	h.ctx = ctx
	h.mu.Unlock()
	t := time.NewTicker(max(h.idle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			h.ctx = nil
			for id, f := range h.followers {
				f.cancel()
				delete(h.followers, id)
			}
			h.mu.Unlock()
			h.wg.Wait()
			h.gauge()
			return
		case now := <-t.C:
			h.mu.Lock()
			for id, f := range h.followers {
				if f.refs == 0 && now.Sub(f.lastUsed) > h.idle {
					f.cancel()
					delete(h.followers, id)
				}
			}
			h.mu.Unlock()
			h.gauge()
		}
	}
}

func (h *hub) gauge() {
	if h.metrics == nil {
		return
	}
	h.mu.Lock()
	n := len(h.followers)
	h.mu.Unlock()
	h.metrics.Followers.Set(float64(n))
}

// acquire returns batch's follower, starting it if none runs, and a
// function to call once done with it.
func (h *hub) acquire(ctx context.Context, spec queue.BatchSpec) (*follower, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx == nil {
		return nil, nil, errNotRunning
	}
	f := h.followers[spec.ID]
	if f == nil || f.spec.Nonce != spec.Nonce { // a batch deleted and submitted again is another batch
		if f != nil {
			f.cancel()
		}
		fctx, cancel := context.WithCancel(h.ctx)
		f = &follower{hub: h, spec: spec, cancel: cancel, moved: make(chan struct{}), index: map[string]*taskIndex{}}
		h.followers[spec.ID] = f
		h.wg.Go(func() { f.run(fctx) })
		if h.metrics != nil {
			h.metrics.Followers.Set(float64(len(h.followers)))
		}
	}
	f.refs++
	var once sync.Once
	return f, func() {
		once.Do(func() {
			h.mu.Lock()
			f.refs--
			f.lastUsed = time.Now()
			h.mu.Unlock()
		})
	}, nil
}

// runningByBatch is the running tasks of every batch, read at most once
// per sampleEvery for the whole server.
func (h *hub) runningByBatch(ctx context.Context) (map[string][]queue.RunningTask, error) {
	return h.running.get(ctx, func(ctx context.Context) (map[string][]queue.RunningTask, error) {
		tasks, _, err := h.q.RunningTasks(ctx)
		if err != nil {
			return nil, err
		}
		out := map[string][]queue.RunningTask{}
		for _, t := range tasks {
			out[t.Task.Batch] = append(out[t.Task.Batch], t)
		}
		for _, ts := range out {
			slices.SortFunc(ts, func(a, b queue.RunningTask) int { return strings.Compare(a.Task.ID, b.Task.ID) })
		}
		return out, nil
	})
}

// sampled is a value read from etcd at most once per sampleEvery; callers
// within that time share the last reading, and one reading at a time is
// made.
type sampled[T any] struct {
	mu  sync.Mutex
	at  time.Time
	val T
}

func (s *sampled[T]) get(ctx context.Context, read func(context.Context) (T, error)) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.at.IsZero() && time.Since(s.at) < sampleEvery {
		return s.val, nil
	}
	v, err := read(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	s.val, s.at = v, time.Now()
	return v, nil
}

// follower follows one batch's results: a list, then a watch, kept by
// queue.SyncListed. It holds each task's result status (not the results),
// the counts per status and zone, and indexes of tasks per filter.
type follower struct {
	hub    *hub
	spec   queue.BatchSpec
	cancel context.CancelFunc

	// guarded by hub.mu
	refs     int
	lastUsed time.Time

	mu         sync.Mutex
	status     map[string]queue.Status
	counts     map[queue.Status]int
	zoneOf     map[string]string // task → zone; nil when the batch has one zone
	zoneCounts map[string]map[queue.Status]int
	listed     bool
	version    uint64        // bumped with every change
	moved      chan struct{} // closed and replaced with every change
	index      map[string]*taskIndex
	failure    error // why the zones could not be read

	// Every task with a result, sorted, kept by merging what arrived
	// since (added) at most once per sampleEvery; a deletion makes it be
	// built again whole.
	all      []string
	allAt    time.Time
	added    []string
	allStale bool

	retrying sampled[int]
	summary  sampled[*queue.Summary]
}

// taskIndex is the sorted tasks matching one filter, as of a version.
type taskIndex struct {
	version uint64
	at      time.Time
	tasks   []string
}

func (f *follower) run(ctx context.Context) {
	if len(f.spec.Zones) > 1 {
		if err := f.loadZones(ctx); err != nil {
			if ctx.Err() == nil {
				f.hub.log.Warn().Err(err).Str("batch", f.spec.ID).Msg("web: could not read the batch's inventory for its zones; counts per zone are left out")
			}
			f.mu.Lock()
			f.failure = err
			f.mu.Unlock()
		}
	}
	reset := func() {
		f.mu.Lock()
		f.status, f.counts, f.listed = map[string]queue.Status{}, map[queue.Status]int{}, false
		f.zoneCounts = map[string]map[queue.Status]int{}
		f.all, f.added, f.allStale = nil, nil, true
		f.changed()
		f.mu.Unlock()
	}
	listed := func(int64) {
		f.mu.Lock()
		f.listed = true
		f.changed()
		f.mu.Unlock()
	}
	f.hub.q.SyncListed(ctx, f.hub.q.Keys().BatchResults(f.spec.ID), 0, reset, listed, func(ev queue.Event) {
		if ev.Delete {
			_, task, err := f.hub.q.Keys().ParseResult(string(ev.KV.Key))
			if err == nil {
				f.mu.Lock()
				f.set(task, "")
				f.mu.Unlock()
			}
			return
		}
		task, st, ok := f.hub.q.ResultStatus(ev.KV)
		if !ok {
			return
		}
		f.mu.Lock()
		f.set(task, st)
		f.mu.Unlock()
	})
}

// loadZones reads the batch's inventory once, for each task's zone.
func (f *follower) loadZones(ctx context.Context) error {
	hosts, err := f.hub.q.LoadHosts(ctx, f.spec)
	if err != nil {
		return err
	}
	zones := map[string]string{} // one string per zone, shared by the tasks
	for _, z := range f.spec.Zones {
		zones[z] = z
	}
	zoneOf := make(map[string]string, len(hosts))
	for _, h := range hosts {
		z := queue.ZoneOf(h)
		if s, ok := zones[z]; ok {
			z = s
		}
		zoneOf[queue.TaskID(h.Name)] = z
	}
	f.mu.Lock()
	f.zoneOf = zoneOf
	f.mu.Unlock()
	return nil
}

// set records task's status ("" for a deleted result). f.mu is held.
func (f *follower) set(task string, st queue.Status) {
	old, had := f.status[task]
	if had && old == st {
		return
	}
	zone := ""
	if f.zoneOf != nil {
		zone = f.zoneOf[task]
	}
	if had {
		f.counts[old]--
		if zone != "" {
			f.zoneCounts[zone][old]--
		}
	}
	if !had && st != "" {
		f.added = append(f.added, task)
	}
	if st == "" {
		delete(f.status, task)
		f.allStale = true
	} else {
		f.status[task] = st
		f.counts[st]++
		if zone != "" {
			if f.zoneCounts[zone] == nil {
				f.zoneCounts[zone] = map[queue.Status]int{}
			}
			f.zoneCounts[zone][st]++
		}
	}
	f.changed()
}

// changed marks a change. f.mu is held. While the first listing runs,
// waiters are woken only by its end (listed): a million keys need not
// make a million channels.
func (f *follower) changed() {
	f.version++
	if f.listed || len(f.status) == 0 {
		close(f.moved)
		f.moved = make(chan struct{})
	}
}

// waitListed waits until the follower has listed the results once, or
// ctx ends; it reports whether it has.
func (f *follower) waitListed(ctx context.Context) bool {
	for {
		f.mu.Lock()
		listed, moved := f.listed, f.moved
		f.mu.Unlock()
		if listed {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-moved:
		}
	}
}

// tally is the follower's counts as of now.
type tally struct {
	version    uint64
	listed     bool
	results    int
	counts     map[queue.Status]int
	zoneCounts map[string]map[queue.Status]int // nil: one zone, or unknown
}

func (f *follower) tally() tally {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := tally{version: f.version, listed: f.listed, results: len(f.status), counts: map[queue.Status]int{}}
	for st, n := range f.counts {
		if n > 0 {
			t.counts[st] = n
		}
	}
	if f.zoneOf != nil {
		t.zoneCounts = map[string]map[queue.Status]int{}
		for z, c := range f.zoneCounts {
			t.zoneCounts[z] = map[queue.Status]int{}
			for st, n := range c {
				if n > 0 {
					t.zoneCounts[z][st] = n
				}
			}
		}
	}
	return t
}

// retryingCount is how many tasks wait out a backoff, read at most once
// per sampleEvery.
func (f *follower) retryingCount(ctx context.Context) (int, error) {
	return f.retrying.get(ctx, func(ctx context.Context) (int, error) { return f.hub.q.CountRetrying(ctx, f.spec.ID) })
}

// finished returns the batch's summary once it has one, read at most
// once per sampleEvery and only when every host has a result.
func (f *follower) finished(ctx context.Context, results int) (*queue.Summary, error) {
	if results < f.spec.Hosts {
		return nil, nil
	}
	return f.summary.get(ctx, func(ctx context.Context) (*queue.Summary, error) {
		s, done, err := f.hub.q.Summary(ctx, f.spec.ID)
		if err != nil || !done {
			return nil, err
		}
		return &s, nil
	})
}

// matching returns the tasks whose result is in want (and, with zone, in
// that zone), sorted. It is rebuilt at most once per sampleEvery while
// results change: a page read from it may miss a result committed in the
// last second, never shows one in a status it is not in (the rows are
// read from etcd and checked again).
func (f *follower) matching(want map[queue.Status]bool, zone string) []string {
	var keyParts []string
	for st := range want {
		keyParts = append(keyParts, string(st))
	}
	slices.Sort(keyParts)
	key := strings.Join(keyParts, ",") + "|" + zone
	f.mu.Lock()
	defer f.mu.Unlock()
	ix := f.index[key]
	if ix != nil && (ix.version == f.version || time.Since(ix.at) < sampleEvery) {
		return ix.tasks
	}
	var tasks []string
	for task, st := range f.status {
		if (want == nil || want[st]) && (zone == "" || f.zoneOf == nil || f.zoneOf[task] == zone) {
			tasks = append(tasks, task)
		}
	}
	slices.Sort(tasks)
	if len(f.index) > 32 {
		clear(f.index)
	}
	f.index[key] = &taskIndex{version: f.version, at: time.Now(), tasks: tasks}
	return tasks
}

// allTasks returns every task with a result, sorted, as of at most
// sampleEvery ago: what bounds a results range (see queue.PageQuery.Until).
func (f *follower) allTasks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.allAt.IsZero() && time.Since(f.allAt) < sampleEvery && !f.allStale {
		return f.all
	}
	switch {
	case f.allStale:
		all := make([]string, 0, len(f.status))
		for task := range f.status {
			all = append(all, task)
		}
		slices.Sort(all)
		f.all, f.allStale = all, false
	case len(f.added) > 0:
		slices.Sort(f.added)
		merged := make([]string, 0, len(f.all)+len(f.added))
		i, j := 0, 0
		for i < len(f.all) && j < len(f.added) {
			if f.all[i] < f.added[j] {
				merged = append(merged, f.all[i])
				i++
			} else {
				merged = append(merged, f.added[j])
				j++
			}
		}
		merged = append(append(merged, f.all[i:]...), f.added[j:]...)
		f.all = merged
	}
	f.added, f.allAt = nil, time.Now()
	return f.all
}

// unfinished counts the tasks of ts that have no result.
func (f *follower) unfinished(ts []queue.RunningTask) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range ts {
		if _, done := f.status[t.Task.ID]; !done {
			n++
		}
	}
	return n
}

// zoneOfTask is a task's zone, "" when unknown.
func (f *follower) zoneOfTask(task string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.zoneOf == nil {
		if len(f.spec.Zones) == 1 {
			return f.spec.Zones[0]
		}
		return ""
	}
	return f.zoneOf[task]
}
