package scheduler

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/patrol-dev/patrol/queue"
)

// promoteDuty makes tasks that waited out a retry backoff ready again. It
// follows <prefix>/delayed/ (a list, then a watch) and promotes what is due
// every 100 ms. Each task's due time is decoded once, as it arrives, not
// at every pass.
type promoteDuty struct {
	l *leader

	mu      sync.Mutex
	delayed map[string]delayedTask // delayed tasks by key
}

// delayedTask is a delayed task's record and when it is due (zero: at
// once, its value did not decode, and Promote quarantines it).
type delayedTask struct {
	kv  *mvccpb.KeyValue
	due time.Time
}

func newPromoteDuty(l *leader) *promoteDuty {
	return &promoteDuty{l: l, delayed: map[string]delayedTask{}}
}

func (d *promoteDuty) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	q := d.l.s.q
	wg.Go(func() { q.Sync(ctx, q.Keys().Delayed(), time.Minute, d.reset, d.onDelayed) })
	every(ctx, 100*time.Millisecond, nil, func() { d.promote(ctx) })
}

func (d *promoteDuty) onDelayed(ev queue.Event) {
	d.mu.Lock()
	if ev.Delete {
		delete(d.delayed, string(ev.KV.Key))
	} else {
		var t struct {
			NotBefore time.Time `json:"not_before"`
		}
		if json.Unmarshal(ev.KV.Value, &t) != nil {
			t.NotBefore = time.Time{}
		}
		d.delayed[string(ev.KV.Key)] = delayedTask{kv: ev.KV, due: t.NotBefore}
	}
	d.mu.Unlock()
}

func (d *promoteDuty) reset() {
	d.mu.Lock()
	clear(d.delayed)
	d.mu.Unlock()
}

// promote makes delayed tasks whose backoff has passed ready again.
func (d *promoteDuty) promote(ctx context.Context) {
	now := time.Now()
	var due []*mvccpb.KeyValue
	d.mu.Lock()
	for k, t := range d.delayed {
		if !t.due.After(now) {
			due = append(due, t.kv)
			delete(d.delayed, k)
		}
	}
	d.mu.Unlock()
	if len(due) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := d.l.s.q.Promote(cctx, d.l.fence, due)
	d.l.check(err, "promote", noFields)
}
