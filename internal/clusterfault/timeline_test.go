//go:build linux

package clusterfault

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/queue"
)

// timeline follows every write under the Patrol prefix through one watch
// per member, and dates each revision by when it first arrived from any of
// them (on loopback, within milliseconds of its commit). A member that is
// frozen or killed delays only its own watch, so the timeline shows when
// the cluster committed, not when one member could tell.
//
// Each member's watch delivers revisions in order and without gaps, so a
// revision above the highest one processed is new, and one at or below it
// was processed when another member delivered it.
type timeline struct {
	keys queue.Keys

	mu      sync.Mutex
	highest int64         // the highest revision processed
	changed chan struct{} // closed and replaced whenever a revision is processed

	results   map[string]int         // results committed, by batch
	commits   map[string][]time.Time // when each revision holding a batch's results arrived
	summaries map[string]time.Time   // when each batch's summary arrived
	running   map[string]runningTask // tasks a running record names, by task ID
	groups    map[string][]string    // the task IDs of each running record, by group
	spans     []span                 // every closed stay in running
	restarts  int                    // the test's own watches restarted after a compaction
	// held is the claim, running and done keys present, by group; heldAt
	// when the last of them came or went.
	held   map[string]map[string]bool
	heldAt time.Time
}

// runningTask is a task named by a running record: claimed and not yet
// finished or requeued.
type runningTask struct {
	host  string
	since time.Time
}

// span is one stay of a host in running: from the running record that
// named it to its result, or to the record's deletion (its group requeued).
type span struct {
	host       string
	start, end time.Time
}

// follow starts a timeline from revision rev and stops it when t ends.
func follow(t *testing.T, c *cluster, keys queue.Keys, rev int64) *timeline {
	tl := &timeline{
		keys: keys, highest: rev - 1, changed: make(chan struct{}),
		results: map[string]int{}, commits: map[string][]time.Time{}, summaries: map[string]time.Time{},
		running: map[string]runningTask{}, groups: map[string][]string{}, held: map[string]map[string]bool{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, m := range c.members {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{m.client},
			DialTimeout: 5 * time.Second,
			Logger:      logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
		})
		if err != nil {
			t.Fatalf("connect to %s: %v", m.name, err)
		}
		wg.Go(func() {
			defer cli.Close()
			tl.watch(ctx, cli, rev)
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return tl
}

// watch feeds one member's events into the timeline until ctx ends. It
// does not require a leader: a member cut off from the others merely
// delivers nothing, and the others carry the timeline. After a compaction
// overtook it, it resumes from the oldest revision left; the revisions in
// between come from the other members.
func (tl *timeline) watch(ctx context.Context, cli *clientv3.Client, rev int64) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		for resp := range cli.Watch(wctx, tl.keys.All(), clientv3.WithPrefix(), clientv3.WithRev(rev)) {
			if resp.CompactRevision != 0 {
				rev = resp.CompactRevision
				tl.mu.Lock()
				tl.restarts++
				tl.mu.Unlock()
				break
			}
			if len(resp.Events) > 0 {
				tl.add(resp.Events)
				rev = resp.Events[len(resp.Events)-1].Kv.ModRevision + 1
			}
		}
		cancel()
	}
}

// add processes the events of the revisions not yet processed.
func (tl *timeline) add(events []*clientv3.Event) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	now := time.Now()
	top := tl.highest
	counted := map[string]bool{} // batches whose results this revision holds
	for i, ev := range events {
		rev := ev.Kv.ModRevision
		if rev <= tl.highest {
			continue
		}
		if i > 0 && rev != events[i-1].Kv.ModRevision {
			clear(counted)
		}
		top = max(top, rev)
		tl.apply(ev, now, counted)
	}
	if top > tl.highest {
		tl.highest = top
		close(tl.changed)
		tl.changed = make(chan struct{})
	}
}

// apply records one event; counted holds the batches that already have a
// commit dated at this event's revision.
func (tl *timeline) apply(ev *clientv3.Event, now time.Time, counted map[string]bool) {
	key := string(ev.Kv.Key)
	put := ev.Type == clientv3.EventTypePut
	if group, err := tl.keys.ParseGroup(key); err == nil {
		tl.hold(group, key, put, now)
	}
	switch {
	case strings.HasPrefix(key, tl.keys.Results()):
		batch, task, err := tl.keys.ParseResult(key)
		if err != nil || !put {
			return
		}
		tl.results[batch]++
		if !counted[batch] {
			counted[batch] = true
			tl.commits[batch] = append(tl.commits[batch], now)
		}
		tl.leave(task, now)
	case strings.HasPrefix(key, tl.keys.Running()):
		group := strings.TrimPrefix(key, tl.keys.Running())
		if !put {
			for _, task := range tl.groups[group] {
				tl.leave(task, now)
			}
			delete(tl.groups, group)
			return
		}
		var r queue.Running
		if json.Unmarshal(ev.Kv.Value, &r) != nil {
			return
		}
		ids := make([]string, 0, len(r.Tasks))
		for _, task := range r.Tasks {
			ids = append(ids, task.ID)
			if _, ok := tl.running[task.ID]; !ok {
				tl.running[task.ID] = runningTask{host: task.Host.Name, since: now}
			}
		}
		tl.groups[group] = ids
	case strings.HasPrefix(key, tl.keys.Batches()) && strings.HasSuffix(key, "/summary") && put:
		batch := strings.TrimSuffix(strings.TrimPrefix(key, tl.keys.Batches()), "/summary")
		if _, ok := tl.summaries[batch]; !ok {
			tl.summaries[batch] = now
		}
	}
}

// hold records a group key coming (put) or going.
func (tl *timeline) hold(group, key string, put bool, now time.Time) {
	tl.heldAt = now
	if put {
		if tl.held[group] == nil {
			tl.held[group] = map[string]bool{}
		}
		tl.held[group][key] = true
		return
	}
	delete(tl.held[group], key)
	if len(tl.held[group]) == 0 {
		delete(tl.held, group)
	}
}

// leave ends a task's stay in running, if it is in one.
func (tl *timeline) leave(task string, now time.Time) {
	if r, ok := tl.running[task]; ok {
		tl.spans = append(tl.spans, span{host: r.host, start: r.since, end: now})
		delete(tl.running, task)
	}
}

// await blocks until cond, called with the timeline locked, holds, or
// fails t after timeout.
func (tl *timeline) await(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		tl.mu.Lock()
		ok, changed := cond(), tl.changed
		tl.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited %s for %s", timeout, what)
		}
	}
}

// awaitResults waits until n results of batch have been committed.
func (tl *timeline) awaitResults(t *testing.T, timeout time.Duration, batch string, n int) {
	t.Helper()
	tl.await(t, timeout, fmt.Sprintf("%d results of %s", n, batch), func() bool { return tl.results[batch] >= n })
}

// awaitSummary waits for batch's summary and returns when it was written.
func (tl *timeline) awaitSummary(t *testing.T, timeout time.Duration, batch string) time.Time {
	t.Helper()
	tl.await(t, timeout, "the summary of "+batch, func() bool { _, ok := tl.summaries[batch]; return ok })
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.summaries[batch]
}

// stall is the longest gap between consecutive commits of batch's
// results up to until (its summary: a result written after that is a
// rewrite, which the invariants report), and when it began.
func (tl *timeline) stall(batch string, until time.Time) (gap time.Duration, from time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	c := tl.commits[batch]
	for i := 1; i < len(c) && !c[i].After(until); i++ {
		if d := c[i].Sub(c[i-1]); d > gap {
			gap, from = d, c[i-1]
		}
	}
	return gap, from
}

// longestRunning is the longest stay of a host in running, and of what of
// a stay came after since: it ended later than since.
func (tl *timeline) longestRunning(since time.Time) (longest span, after time.Duration) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, s := range tl.spans {
		if s.end.Sub(s.start) > longest.end.Sub(longest.start) {
			longest = s
		}
		if !since.IsZero() && s.end.After(since) {
			after = max(after, s.end.Sub(later(s.start, since)))
		}
	}
	return longest, after
}

// heldGroups is the number of groups with a claim, running or done key.
func (tl *timeline) heldGroups() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.held)
}

// awaitNoneHeld waits until no group has a claim, running or done key,
// and returns when the last one went.
func (tl *timeline) awaitNoneHeld(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	tl.await(t, timeout, "every claim, running and done key to go", func() bool { return len(tl.held) == 0 })
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.heldAt
}

// stillRunning is the number of tasks a running record still names.
func (tl *timeline) stillRunning() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.running)
}

// watchRestarts is how often a test watch was overtaken by a compaction.
func (tl *timeline) watchRestarts() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.restarts
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
