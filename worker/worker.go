package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/patrol-dev/patrol/internal/check"
	"github.com/patrol-dev/patrol/internal/metrics"
	"github.com/patrol-dev/patrol/queue"
)

// Defaults for Config.
const (
	DefaultConcurrency  = 64
	DefaultLeaseTTL     = 10 * time.Second
	DefaultDrainTimeout = 30 * time.Second
	DefaultCallTimeout  = 2 * time.Second
	// MaxConcurrency is the most checks one worker runs at once: past
	// that, run more workers.
	MaxConcurrency = 100000
	// MinCallTimeout is the least CallTimeout accepted.
	MinCallTimeout = 500 * time.Millisecond
)

// Config configures a Worker. Zero fields take the defaults noted.
type Config struct {
	// ID names the worker in claims, results and logs. Required.
	ID string
	// Concurrency is how many checks run at once. Default 64.
	Concurrency int
	// LeaseTTL is the session lease TTL: a dead worker's tasks are
	// requeued about this long after it died. Default 10s, minimum 2s.
	LeaseTTL time.Duration
	// Zone is where the worker runs: it only runs tasks of hosts in this
	// zone (the host variable "zone"). Default "default".
	Zone string
	// Version is reported in the worker's registration.
	Version string
	// DrainTimeout is how long running checks may go on once Run's context
	// ends; then they are cut short and their tasks released. Default 30s.
	DrainTimeout time.Duration
	// CallTimeout is the least time an etcd call of the claim and commit
	// path is given. The deadline actually used is four times the
	// slowest recent transaction when that is longer, so a far or busy
	// etcd never fails a call for being slow. Default 2s: a call to a
	// member that hangs gives up soon, and its retry goes to another.
	CallTimeout time.Duration
	// RequestLimit, when above 0, fixes how many claim transactions (and
	// how many commit transactions) are kept in flight, at most 8, in
	// place of the adaptive limit. Default 0: adaptive.
	RequestLimit int
	// Log receives the worker's log lines.
	Log zerolog.Logger
	// Checks carries what checks need from the worker's own configuration:
	// the exec and ssh allowlists, SSH keys and known_hosts.
	Checks check.Options
	// OnClaim, if set, is called after each claim transaction with its
	// latency and how many tasks it took (for benchmarks).
	OnClaim func(latency time.Duration, tasks int)
	// Metrics receives the worker's metrics. Default: unregistered ones.
	Metrics *metrics.Worker
}

// Stats are a worker's running counts.
type Stats struct {
	Claimed   int64 // tasks claimed
	Committed int64 // outcomes committed (results and retries)
	Rejected  int64 // zombie completions rejected by the claim fence
	Released  int64 // groups given back unfinished
	// RequestLimit is how many claim transactions, and how many commit
	// transactions, the worker keeps in flight now: lowered while etcd's
	// latency is well above the worker's own baseline.
	RequestLimit int
}

// Worker claims and runs tasks.
type Worker struct {
	q   *queue.Queue
	cfg Config
	log zerolog.Logger

	claimed, committed, rejected, released atomic.Int64
	groupSeq                               atomic.Int64
	limit                                  *requestLimit

	killOnce sync.Once
	kill     chan struct{} // closed by Kill

	m         *metrics.Worker
	live      atomic.Bool   // a session is open and registered
	started   chan struct{} // closed once the first session is registered
	startOnce sync.Once

	mu      sync.Mutex
	batches map[string]*batchEntry // by batch ID
	active  map[string]bool        // the active-batch index, as followed
}

// batchEntry is what a worker knows of a batch: its check and policy, and
// a context cancelled when the batch is cancelled.
type batchEntry struct {
	check     check.Check
	checkType string
	err       error // the check cannot be built here
	policy    queue.Policy
	priority  int      // its share of listings; see queue.PriorityWeight
	shards    int      // its tasks are in shards 0 to shards-1
	zones     []string // the zones of its hosts
	ctx       context.Context
	cancel    context.CancelFunc
	deleted   atomic.Bool // the batch was deleted: its outcomes are dropped
}

// New validates cfg and returns a Worker.
func New(q *queue.Queue, cfg Config) (*Worker, error) {
	if cfg.ID == "" {
		return nil, errors.New("worker: ID is required")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Concurrency < 0 || cfg.Concurrency > MaxConcurrency {
		return nil, fmt.Errorf("worker: concurrency %d is out of range: give 1 to %d", cfg.Concurrency, MaxConcurrency)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("worker: lease TTL %s is below etcd's 2s minimum", cfg.LeaseTTL)
	}
	if cfg.Zone == "" {
		cfg.Zone = queue.DefaultZone
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.CallTimeout < MinCallTimeout || cfg.CallTimeout > MaxCallTimeout {
		return nil, fmt.Errorf("worker: call timeout %s is out of range: give %s to %s", cfg.CallTimeout, MinCallTimeout, MaxCallTimeout)
	}
	if cfg.RequestLimit < 0 || cfg.RequestLimit > MaxRequestLimit {
		return nil, fmt.Errorf("worker: request limit %d is out of range: give 1 to %d, or 0 for the adaptive limit", cfg.RequestLimit, MaxRequestLimit)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewWorker(nil)
	}
	if err := queue.ValidateZone(cfg.Zone); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if strings.Contains(cfg.ID, "/") {
		return nil, fmt.Errorf("worker: ID %q must not contain '/'", cfg.ID)
	}
	w := &Worker{q: q, cfg: cfg, log: cfg.Log.With().Str("worker_id", cfg.ID).Logger(), batches: map[string]*batchEntry{}, active: map[string]bool{},
		kill: make(chan struct{}), m: cfg.Metrics, started: make(chan struct{})}
	shown := initialLimit // what the metric holds; fix sets it again below
	if cfg.RequestLimit > 0 {
		shown = cfg.RequestLimit
	}
	w.limit = newRequestLimit(w.log, func(n int) {
		w.m.RequestLimit.Add(float64(n - shown))
		shown = n
	})
	// Gauges are added to, not set: workers sharing one Metrics (as in
	// `patrol dev`) report their sum.
	w.m.Capacity.Add(float64(cfg.Concurrency))
	if cfg.RequestLimit > 0 {
		w.limit.fix(cfg.RequestLimit)
	}
	w.m.RequestLimit.Add(float64(w.limit.get()))
	return w, nil
}

// Stats returns the worker's counts so far.
func (w *Worker) Stats() Stats {
	return Stats{Claimed: w.claimed.Load(), Committed: w.committed.Load(), Rejected: w.rejected.Load(), Released: w.released.Load(),
		RequestLimit: w.limit.get()}
}

// Ready returns nil while the worker holds a live, registered session, and
// says why not otherwise: it is what /readyz reports.
func (w *Worker) Ready() error {
	if !w.live.Load() {
		return errors.New("worker has no live session: it is starting, or lost its lease and is opening a new one")
	}
	return nil
}

// Started is closed once the worker has registered its first session.
func (w *Worker) Started() <-chan struct{} { return w.started }

// Kill ends a drain at once: running checks are cut short and their tasks
// released, and Run returns. It is what a second SIGTERM does. Safe to
// call more than once, and from any goroutine.
func (w *Worker) Kill() { w.killOnce.Do(func() { close(w.kill) }) }

// Run claims and runs tasks until ctx ends, opening a new session whenever
// the current one is lost. When ctx ends it drains: it stops claiming, lets
// running checks finish for up to DrainTimeout (or until Kill), commits
// their results, releases what did not finish so that it is requeued at
// once, and revokes its lease. It returns nil when ctx is cancelled.
func (w *Worker) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.kill: // killed: no new session either
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := w.session(ctx)
		if ctx.Err() != nil {
			break
		}
		w.log.Warn().Err(err).Dur("retry_in", backoff).Msg("worker session ended; starting a new one")
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	st := w.Stats()
	w.log.Info().Int64("claimed", st.Claimed).Int64("committed", st.Committed).
		Int64("rejected", st.Rejected).Int64("released", st.Released).Msg("worker stopped")
	return nil
}

// session runs the claim loop on one lease until the lease is lost or ctx
// ends, then drains.
func (w *Worker) session(ctx context.Context) error {
	// The lease must outlive ctx: a draining worker still commits.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	go func() {
		select {
		case <-w.kill:
			endLife()
		case <-life.Done():
		}
	}()
	sess, err := concurrency.NewSession(w.q.Client(), concurrency.WithTTL(int(w.cfg.LeaseTTL.Seconds())), concurrency.WithContext(life))
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	lease := sess.Lease()
	// lost is closed when the lease is gone (or etcd cannot say); kept
	// follows the session that keeps it alive now.
	lost, kept := w.keepLease(life, sess)
	info := queue.WorkerInfo{ID: w.cfg.ID, Zone: w.cfg.Zone, Capacity: w.cfg.Concurrency, Version: w.cfg.Version, StartedAt: time.Now().UTC()}
	registered := false
	leaseGone := false // etcd answered that the lease is not found
	defer func() {
		// Revoke the lease, unless it expired on its own (the session ended
		// while life was still alive, or etcd said it is gone before the
		// keepalive loop noticed): then there is nothing to revoke.
		expired := leaseGone
		select {
		case <-lost:
			expired = expired || life.Err() == nil
		default:
		}
		if expired {
			w.m.KeepaliveFailures.Inc()
		} else {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if registered {
				// Say this is a clean stop, so the leader does not count
				// the lease's end as an expiry.
				info.Stopping = true
				w.q.Register(cctx, lease, info)
			}
			w.q.Client().Revoke(cctx, lease)
		}
		kept().Orphan()
	}()
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	err = w.q.Register(rctx, lease, info)
	rcancel()
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	registered = true
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Str("zone", w.cfg.Zone).Str("lease", fmt.Sprintf("%x", lease)).Msg("worker started")
	w.live.Store(true)
	defer w.live.Store(false)
	w.startOnce.Do(func() { close(w.started) })

	// taskCtx ends when the session is lost, the worker is killed, or the
	// drain times out; claimCtx also ends when ctx does.
	taskCtx, endTasks := context.WithCancel(life)
	defer endTasks()
	go func() {
		select {
		case <-lost:
			endTasks()
		case <-taskCtx.Done():
		}
	}()
	claimCtx, endClaims := context.WithCancel(taskCtx)
	defer endClaims()
	stopClaims := context.AfterFunc(ctx, endClaims)
	defer stopClaims()

	s := newRun(w, lease, lost)
	wake := make(chan wakeKind, 1)
	var watchers, tasks sync.WaitGroup
	watchers.Go(func() { w.watchWake(claimCtx, wake) })
	watchers.Go(func() { w.watchCancels(taskCtx) })
	watchers.Go(func() { w.watchActive(taskCtx) })
	watchers.Go(func() { w.q.KeepLease(taskCtx, lease, w.cfg.LeaseTTL) })
	watchers.Go(func() { s.watchAssignment(claimCtx) })
	committed := make(chan struct{})
	go func() { defer close(committed); s.commitLoop(ctx) }()

	err = s.claimLoop(claimCtx, taskCtx, wake, &tasks)
	leaseGone = errors.Is(err, errLeaseGone)
	if leaseGone {
		endTasks() // etcd said so: do not wait for the keepalive to notice
	}
	endClaims()
	if ctx.Err() != nil && taskCtx.Err() == nil {
		s.drain(&tasks, endTasks)
	}
	tasks.Wait() // every check has returned and sent its outcome
	endTasks()
	close(s.outcomes) // the committer flushes what is left, then releases
	<-committed
	watchers.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	return errors.New("lease lost")
}

// keepLease follows the worker's lease through sessions. A session's
// keepalive stream stays on one etcd member; when that member hangs, the
// client gives the session up after a TTL without answers, though the
// lease may be alive (queue.KeepLease renews it through other members,
// and an etcd leader change renews every lease). Then keepLease asks etcd,
// through a member that answers, whether the lease is alive, and if so
// keeps it with a new session on the same lease: the worker keeps its
// claims and its running checks. lost is closed when the lease is gone,
// or no member can say; kept returns the current session.
func (w *Worker) keepLease(life context.Context, first *concurrency.Session) (lost <-chan struct{}, kept func() *concurrency.Session) {
	ch := make(chan struct{})
	var mu sync.Mutex
	cur := first
	go func() {
		defer close(ch)
		s := first
		for {
			select {
			case <-life.Done():
				return
			case <-s.Done():
			}
			if life.Err() != nil || !w.leaseAlive(life, first.Lease()) {
				return
			}
			ns, err := concurrency.NewSession(w.q.Client(), concurrency.WithLease(first.Lease()),
				concurrency.WithTTL(int(w.cfg.LeaseTTL.Seconds())), concurrency.WithContext(life))
			if err != nil {
				return
			}
			w.log.Warn().Str("lease", fmt.Sprintf("%x", first.Lease())).
				Msg("the lease's keepalive stream went unanswered (its etcd member hangs or is cut off), but the lease is alive: keeping it through another member")
			mu.Lock()
			cur = ns
			mu.Unlock()
			s = ns
		}
	}()
	return ch, func() *concurrency.Session {
		mu.Lock()
		defer mu.Unlock()
		return cur
	}
}

// leaseAlive asks etcd whether lease still has time left, up to three
// times with a short deadline, each going to the member the client's
// balancer picks.
// When it is not, it logs which member said so, or that none answered.
func (w *Worker) leaseAlive(ctx context.Context, lease clientv3.LeaseID) bool {
	var lastErr error
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := w.q.Client().TimeToLive(cctx, lease)
		cancel()
		if err == nil {
			if resp.TTL <= 0 {
				w.log.Warn().Str("lease", fmt.Sprintf("%x", lease)).Str("member", fmt.Sprintf("%x", resp.GetMemberId())).
					Msg("lease lost: its keepalives went unanswered past its TTL, and etcd (this member) says it expired")
			}
			return resp.TTL > 0
		}
		lastErr = err
		if ctx.Err() != nil {
			return false
		}
	}
	w.log.Warn().Err(lastErr).Str("lease", fmt.Sprintf("%x", lease)).Strs("endpoints", w.q.Client().Endpoints()).
		Msg("lease taken as lost: its keepalives went unanswered past its TTL, and no etcd member answered whether it is alive")
	return false
}

// drain waits for running checks for up to DrainTimeout, or until Kill,
// then cuts the rest short.
func (s *run) drain(tasks *sync.WaitGroup, cut func()) {
	w := s.w
	running := len(s.slots)
	w.log.Info().Int("running", running).Dur("drain_timeout", w.cfg.DrainTimeout).Msg("draining: no new claims; letting running checks finish")
	done := make(chan struct{})
	go func() { tasks.Wait(); close(done) }()
	timer := time.NewTimer(w.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
		w.log.Warn().Int("running", len(s.slots)).Msg("drain timeout: cutting running checks short and releasing their tasks")
	case <-w.kill:
		w.log.Warn().Int("running", len(s.slots)).Msg("killed while draining: releasing running tasks")
	}
	cut()
	<-done
}

// runTask runs one claimed task's check and decides its outcome. It reports
// false when the check was cut short by the worker stopping or losing its
// session: such a run says nothing about the host.
func (s *run) runTask(ctx context.Context, g *queue.Group, i int) (queue.Outcome, bool) {
	w := s.w
	t := g.Running.Tasks[i]
	b, err := w.batch(ctx, t.Batch)
	if errors.Is(err, queue.ErrBatchNotFound) {
		return queue.Outcome{Group: g, Index: i, Drop: true}, true // deleted: nothing to run or record
	}
	if err != nil {
		return queue.Outcome{}, false // etcd unreachable: the group is released and retried
	}
	start := time.Now()
	var res check.Result
	if b.err != nil {
		res = check.Result{Status: check.StatusError, Message: b.err.Error()}
	} else {
		tctx, cancel := context.WithTimeout(ctx, b.policy.Timeout())
		stop := context.AfterFunc(b.ctx, cancel) // the batch was cancelled
		res = b.check.Run(tctx, t.Host)
		stop()
		cancel()
	}
	if ctx.Err() != nil {
		return queue.Outcome{}, false // cut short: says nothing about the host, and is not timed
	}
	if b.ctx.Err() != nil {
		w.m.CheckDone(b.checkType, string(queue.StatusCancelled), time.Since(start))
	} else {
		w.m.CheckDone(b.checkType, string(res.Status), time.Since(start))
	}
	now := time.Now().UTC()
	attempt := queue.Attempt{Attempt: t.Attempt, Round: t.Round, Status: queue.Status(res.Status), Message: res.Message, Worker: w.cfg.ID,
		DurationMS: now.Sub(start).Milliseconds(), FinishedAt: now, Details: res.Details}
	o := queue.Outcome{Group: g, Index: i}
	if b.deleted.Load() {
		o.Drop = true // the batch is gone: record nothing under it
		return o, true
	}
	if b.ctx.Err() != nil {
		o.Result = result(t, attempt)
		o.Result.Status, o.Result.Message = queue.StatusCancelled, "batch cancelled while this host ran"
		return o, true
	}
	retryable := res.Status == check.StatusError || res.Status == check.StatusFail && b.policy.RetryFailures
	switch {
	case res.Status == check.StatusOK || !retryable:
		o.Result = result(t, attempt)
	case t.Attempt >= b.policy.MaxAttempts:
		o.Result = result(t, attempt)
		o.Result.Status = queue.StatusDead
		o.Result.Message = fmt.Sprintf("out of attempts (%d): %s", t.Attempt, res.Message)
	default:
		next := t
		next.History = append(append([]queue.Attempt(nil), t.History...), withoutOutput(attempt))
		next.Attempt++
		next.NotBefore = now.Add(b.policy.Backoff(next.Attempt, queue.Jitter))
		o.Retry = &next
		taskFields(w.log.Debug(), t).Str("status", string(res.Status)).Time("not_before", next.NotBefore).Msg("will retry")
	}
	return o, true
}

// withoutOutput drops a check's captured output from an attempt kept in
// history: the last attempt's output is in the result; earlier ones would
// only grow every record.
func withoutOutput(a queue.Attempt) queue.Attempt {
	if _, ok := a.Details["output"]; ok {
		d := make(map[string]string, len(a.Details))
		for k, v := range a.Details {
			if k != "output" {
				d[k] = v
			}
		}
		a.Details = d
	}
	return a
}

func result(t queue.Task, a queue.Attempt) *queue.Result {
	return &queue.Result{Host: t.Host.Name, Status: a.Status, Attempts: t.Attempt, Message: a.Message, DurationMS: a.DurationMS,
		Worker: a.Worker, FinishedAt: a.FinishedAt, Round: t.Round, History: t.History, Details: a.Details}
}

// taskFields adds what names a task to a log line about it (the worker's
// logger adds worker_id). It is built per line, not per task: a task that
// succeeds logs nothing at info level, and must cost nothing for it.
func taskFields(e *zerolog.Event, t queue.Task) *zerolog.Event {
	return e.Str("batch_id", t.Batch).Str("task_id", t.ID).Str("host", t.Host.Name).Int("attempt", t.Attempt)
}

// countOutcome records a committed outcome in the metrics.
func (w *Worker) countOutcome(ctx context.Context, o queue.Outcome) {
	checkType := "other"
	if b, err := w.batch(ctx, o.Group.Running.Tasks[o.Index].Batch); err == nil {
		checkType = b.checkType
	}
	switch {
	case o.GivenBack, o.Drop: // counted when given back; nothing to count
	case o.Retry != nil:
		w.m.Retried(checkType)
	case o.Result != nil:
		w.m.Committed(string(o.Result.Status), checkType)
		if o.Result.Status == queue.StatusDead {
			w.m.Dead(checkType)
		}
	}
}

// policyOf returns a batch's policy as the worker knows it, or the
// default policy when the batch cannot be read now.
func (w *Worker) policyOf(id string) queue.Policy {
	w.mu.Lock()
	b, ok := w.batches[id]
	w.mu.Unlock()
	if !ok {
		return queue.DefaultPolicy()
	}
	return b.policy
}

// batch returns what the worker knows of a batch, loading it once.
func (w *Worker) batch(ctx context.Context, id string) (*batchEntry, error) {
	w.mu.Lock()
	b, ok := w.batches[id]
	w.mu.Unlock()
	if ok {
		return b, nil
	}
	cctx, cancel := context.WithTimeout(ctx, w.limit.timeout(w.cfg.CallTimeout))
	defer cancel()
	spec, err := w.q.LoadBatch(cctx, id)
	if err != nil {
		return nil, fmt.Errorf("load batch %s: %w", id, err)
	}
	b = &batchEntry{policy: spec.Policy, checkType: spec.Check, priority: spec.Priority, shards: spec.Shards, zones: spec.Zones}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.check, b.err = check.NewWith(spec.Check, spec.Params, w.cfg.Checks)
	if b.err != nil {
		b.err = fmt.Errorf("worker %s cannot run this check: %w", w.cfg.ID, b.err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.batches[id]; ok {
		b.cancel()
		return old, nil
	}
	if len(w.batches) > 1000 {
		clear(w.batches) // entries in use stay valid; they are only forgotten
	}
	w.batches[id] = b
	return b, nil
}

// watchWake pokes wake whenever the scheduler makes tasks ready, or only
// ahead when sharding did (queue.WakeSharded). The claim loop also polls,
// so a broken watch costs latency, not work.
func (w *Worker) watchWake(ctx context.Context, wake chan<- wakeKind) {
	down := false
	for restarted := false; ctx.Err() == nil; restarted = true {
		if restarted {
			// Wakes may have gone by while the watch was down.
			select {
			case wake <- wakeAll:
			case <-ctx.Done():
				return
			}
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		err := queue.ErrWatchClosed
		for resp := range w.q.Client().Watch(wctx, w.q.Keys().Wake()) {
			if err = resp.Err(); err != nil {
				break
			}
			err, down = queue.ErrWatchClosed, false
			kind := wakeAhead
			for _, ev := range resp.Events {
				if string(ev.Kv.Value) != queue.WakeSharded {
					kind = wakeAll
				}
			}
			select {
			case wake <- kind:
			default:
				if kind == wakeAll {
					// One may be waiting that looks ahead only: this one
					// must not be lost. The loop takes it as it comes.
					select {
					case wake <- kind:
					case <-wctx.Done():
					}
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.q.WatchRestarted("wake", err, down)
		down = true
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// watchAssignment follows the leader's shard assignment for this zone.
func (s *run) watchAssignment(ctx context.Context) {
	w := s.w
	key := w.q.Keys().Assignment(w.cfg.Zone)
	w.q.Sync(ctx, key, time.Minute, nil, func(ev queue.Event) {
		if string(ev.KV.Key) != key {
			return // the sync is by prefix: a zone whose name extends ours
		}
		a := queue.Assignment{}
		if !ev.Delete {
			var err error
			if a, err = queue.DecodeAssignment(ev.KV.Value); err != nil {
				w.log.Warn().Err(err).Str("key", key).Msg("malformed shard assignment; claiming from every shard")
				a = queue.Assignment{}
			}
		}
		s.mu.Lock()
		s.assign = a
		s.mu.Unlock()
	})
}

// watchActive follows the active-batch index. The active batches, with
// the priority and shards their specs give (each loaded once, when the
// batch appears), are what the worker's listings share their tasks
// between (listBatches).
//
// It also aborts the running checks of batches that stop being active: a
// batch finishes only once every host has a result, so a check still
// running then belongs to a batch that was deleted (`patrol delete
// --force`), and its slot is better used by another batch. The worker
// forgets the batch first, so that a later round of it (`patrol retry`,
// which makes it active again) starts afresh.
func (w *Worker) watchActive(ctx context.Context) {
	reset := func() {
		w.mu.Lock()
		clear(w.active)
		w.mu.Unlock()
	}
	w.q.Sync(ctx, w.q.Keys().Active(), 0, reset, func(ev queue.Event) {
		id, err := w.q.Keys().ParseActive(string(ev.KV.Key))
		if err != nil {
			return
		}
		w.mu.Lock()
		if ev.Delete {
			delete(w.active, id)
		} else {
			w.active[id] = true
		}
		b, ok := w.batches[id]
		w.mu.Unlock()
		if !ev.Delete {
			if !ok {
				// Its priority, before its tasks are listed. A failure
				// leaves it at normal priority until a listing loads it.
				w.batch(ctx, id)
			}
			return
		}
		if !ok || b.ctx.Err() != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, w.limit.timeout(w.cfg.CallTimeout))
		resp, err := w.q.Client().Get(cctx, w.q.Keys().ActiveBatch(id), clientv3.WithCountOnly())
		cancel()
		if err != nil || resp.Count > 0 {
			return // active again (a new round), or etcd cannot tell: leave it
		}
		w.mu.Lock()
		if w.batches[id] == b {
			delete(w.batches, id)
		}
		w.mu.Unlock()
		w.log.Info().Str("batch_id", id).Msg("batch no longer active: aborting what still runs of it")
		b.deleted.Store(true)
		b.cancel()
	})
}

// listBatches is what the worker's listings share their tasks between:
// the active batches with hosts in its zone, each with its priority and
// shards when its spec is loaded (normal priority, any shard, until then).
func (w *Worker) listBatches() map[string]queue.ListBatch {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]queue.ListBatch, len(w.active))
	for id := range w.active {
		lb := queue.ListBatch{}
		if b, ok := w.batches[id]; ok {
			if b.zones != nil && !slices.Contains(b.zones, w.cfg.Zone) {
				continue // nothing of it here (the listing's catch-all would still find it)
			}
			lb.Priority, lb.Shards = b.priority, b.shards
		}
		out[id] = lb
	}
	return out
}

// watchCancels aborts the running checks of cancelled batches.
func (w *Worker) watchCancels(ctx context.Context) {
	w.q.Sync(ctx, w.q.Keys().Cancels(), 0, nil, func(ev queue.Event) {
		if ev.Delete {
			return
		}
		id := string(ev.KV.Key)[len(w.q.Keys().Cancels()):]
		b, err := w.batch(ctx, id)
		if err != nil {
			return // the batch is gone
		}
		if b.ctx.Err() == nil {
			w.log.Info().Str("batch_id", id).Msg("batch cancelled: aborting its running checks")
			b.cancel()
		}
	})
}
