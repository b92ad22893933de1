package queue

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// Schedules: a recurring batch, stored with its inventory, whose ticks the
// elected leader turns into batches. The queue stores schedules and holds
// the transactions that fire them; when a tick is due, and what a tick
// does when the previous run is still going, is the scheduler's business.
//
// The exactly-once rule: a tick's batch ID names the schedule and the tick
// (ScheduleBatchID), and FireSchedule creates it in one transaction that
// holds only if the writer still leads (the fence), the ID is unused, and
// the schedule and its state are as the leader read them. Two leaders for a
// TTL, a retry after a lost reply, a restart: the second attempt at a tick
// finds its batch already there.

var (
	// ErrScheduleNotFound is a schedule name with no spec in etcd.
	ErrScheduleNotFound = errors.New("queue: schedule not found")
	// ErrScheduleExists is a create reusing a schedule's name.
	ErrScheduleExists = errors.New("queue: schedule already exists")
	// ErrBadSchedule is a schedule whose settings are out of range.
	ErrBadSchedule = errors.New("queue: invalid schedule")
)

// Overlap is what a schedule does with a tick while its previous run is
// still running.
type Overlap string

// Overlap policies.
const (
	OverlapSkip      Overlap = "skip"           // record the tick as skipped (the default)
	OverlapBufferOne Overlap = "buffer-one"     // run it when the running batch finishes; a later tick replaces it
	OverlapCancel    Overlap = "cancel-running" // cancel the running batch and run the tick now
	OverlapAllow     Overlap = "allow"          // run it beside the running batch
)

// Overlaps lists the overlap policies.
func Overlaps() []Overlap {
	return []Overlap{OverlapSkip, OverlapBufferOne, OverlapCancel, OverlapAllow}
}

// ParseOverlap reads an --overlap value ("" is the default, skip).
func ParseOverlap(s string) (Overlap, error) {
	if s == "" {
		return OverlapSkip, nil
	}
	if o := Overlap(s); slices.Contains(Overlaps(), o) {
		return o, nil
	}
	names := make([]string, 0, 4)
	for _, o := range Overlaps() {
		names = append(names, string(o))
	}
	return "", fmt.Errorf("%w: overlap policy %q: use one of %s", ErrBadSchedule, s, strings.Join(names, ", "))
}

// Schedule limits and defaults.
const (
	MinEvery             = time.Second
	DefaultCatchupWindow = time.Hour
	MinCatchupWindow     = time.Second
	MaxCatchupWindow     = 30 * 24 * time.Hour
	DefaultHistory       = 20
	MaxHistory           = 1000
	// maxScheduleName leaves room in a 64-character batch ID for
	// "-20261206T060000.000Z-trigger".
	maxScheduleName = 34
)

var scheduleNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,33}$`)

// ValidateScheduleName reports whether name can name a schedule.
func ValidateScheduleName(name string) error {
	if !scheduleNameRe.MatchString(name) {
		return fmt.Errorf("%w: name %q: use 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit",
			ErrBadSchedule, name, maxScheduleName)
	}
	return nil
}

// ScheduleSpec is a schedule: its cadence and what each run submits.
// Stored at Keys.Schedule.
type ScheduleSpec struct {
	Name string `json:"name"`
	// Cron is a cron expression (5 fields or 6 with seconds, descriptors
	// such as @daily, an optional CRON_TZ= prefix); EveryMS a fixed
	// interval, whose ticks are the multiples of it since the Unix epoch.
	// Exactly one is set.
	Cron      string  `json:"cron,omitempty"`
	EveryMS   int64   `json:"every_ms,omitempty"`
	Overlap   Overlap `json:"overlap"`
	CatchupMS int64   `json:"catchup_window_ms"` // a missed tick older than this is not run
	JitterMS  int64   `json:"jitter_ms,omitempty"`
	History   int     `json:"history"` // finished runs kept; older ones are purged

	Check  string            `json:"check"`
	Params map[string]string `json:"params,omitempty"`
	Policy Policy            `json:"policy"`
	// Priority is each run's priority (see BatchSpec.Priority).
	Priority int      `json:"priority,omitempty"`
	Shards   int      `json:"shards"` // each run's; 0: ShardsFor its hosts
	Hosts    int      `json:"hosts"`
	Zones    []string `json:"zones"`
	Nonce    string   `json:"nonce"`  // which inventory version (Keys.ScheduleHosts) is current
	Chunks   int      `json:"chunks"` // how many chunks it has

	Paused    bool      `json:"paused,omitempty"`
	PauseNote string    `json:"pause_note,omitempty"`
	PausedAt  time.Time `json:"paused_at,omitzero"`
	// Since: ticks at or before it are never run. It is the creation
	// time, moved on by a resume and by a change of cadence, so that
	// neither runs the ticks before it as missed.
	Since     time.Time `json:"since"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Every is the fixed interval (0 for a cron schedule).
func (s ScheduleSpec) Every() time.Duration { return time.Duration(s.EveryMS) * time.Millisecond }

// CatchupWindow is how late a tick may still run.
func (s ScheduleSpec) CatchupWindow() time.Duration {
	return time.Duration(s.CatchupMS) * time.Millisecond
}

// Jitter is the most a tick's run is delayed by.
func (s ScheduleSpec) Jitter() time.Duration { return time.Duration(s.JitterMS) * time.Millisecond }

// withDefaults fills zero fields.
func (s ScheduleSpec) withDefaults() ScheduleSpec {
	if s.Overlap == "" {
		s.Overlap = OverlapSkip
	}
	if s.CatchupMS == 0 {
		s.CatchupMS = DefaultCatchupWindow.Milliseconds()
	}
	if s.History == 0 {
		s.History = DefaultHistory
	}
	s.Policy = s.Policy.withDefaults()
	return s
}

// Validate reports the first setting out of range, phrased for the
// operator. The cron expression itself is parsed by the scheduler.
func (s ScheduleSpec) Validate() error {
	if err := ValidateScheduleName(s.Name); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadSchedule}, a...)...)
	}
	switch {
	case (s.Cron == "") == (s.EveryMS == 0):
		return bad("give exactly one of --cron (e.g. --cron '0 6 * * *') and --every (e.g. --every 5m)")
	case s.EveryMS != 0 && (s.Every() < MinEvery || s.EveryMS%1000 != 0):
		return bad("--every %s: use whole seconds, at least %s (e.g. --every 30s)", s.Every(), MinEvery)
	case s.CatchupWindow() < MinCatchupWindow || s.CatchupWindow() > MaxCatchupWindow:
		return bad("--catchup-window %s: use %s to %s (e.g. --catchup-window 1h)", s.CatchupWindow(), MinCatchupWindow, MaxCatchupWindow)
	case s.JitterMS < 0:
		return bad("--jitter %s: must be 0 or more", s.Jitter())
	case s.EveryMS != 0 && s.JitterMS >= s.EveryMS:
		return bad("--jitter %s: must be shorter than --every %s", s.Jitter(), s.Every())
	case s.History < 1 || s.History > MaxHistory:
		return bad("--history %d: keep 1 to %d runs", s.History, MaxHistory)
	case s.Check == "":
		return bad("no check type: pass --check")
	case s.Shards < 0 || s.Shards > MaxShards:
		return bad("%d shards: use 1 to %d, or 0 to size them by the inventory", s.Shards, MaxShards)
	}
	if _, err := ParseOverlap(string(s.Overlap)); err != nil {
		return err
	}
	return s.Policy.Validate()
}

// ScheduleState is what the leader did with a schedule's ticks. Stored at
// Keys.ScheduleState, written only by fenced transactions.
type ScheduleState struct {
	// LastTick is the latest tick dealt with: run, skipped, buffered or
	// missed. Ticks after it are still to come.
	LastTick time.Time `json:"last_tick,omitzero"`
	// LastBatch is the latest run's batch (a tick's or a trigger's).
	LastBatch string `json:"last_batch,omitempty"`
	// Buffered is a tick held by the buffer-one overlap policy until
	// LastBatch finishes (zero: none).
	Buffered time.Time `json:"buffered,omitzero"`
	// Totals since the schedule was created.
	Fired     int64 `json:"fired"`
	Triggered int64 `json:"triggered,omitempty"`
	Skipped   int64 `json:"skipped"`
	Missed    int64 `json:"missed"`
	// Events are the latest ticks not run as scheduled (skipped, buffered,
	// missed, a run cancelled for a newer one, a buffered tick run late),
	// oldest first. Runs themselves are in the run index.
	Events []TickEvent `json:"events,omitempty"`
}

// Tick event kinds.
const (
	TickFired     = "fired"     // the tick's batch was created
	TickTriggered = "triggered" // a `patrol schedule trigger` run
	TickSkipped   = "skipped"   // overlap skip (or a buffered tick replaced by a later one)
	TickBuffered  = "buffered"  // overlap buffer-one: held until the running batch finishes
	TickCancelled = "cancelled" // overlap cancel-running: the running batch was cancelled for it
	TickMissed    = "missed"    // not run: later than the catch-up window, or superseded by a later missed tick
)

// TickEvent is one thing that happened to a tick (or to Count ticks, for
// a run of missed ones).
type TickEvent struct {
	Tick  time.Time `json:"tick"`
	At    time.Time `json:"at"`
	What  string    `json:"what"`
	Batch string    `json:"batch,omitempty"`
	Why   string    `json:"why,omitempty"`
	Count int       `json:"count,omitempty"` // ticks this event stands for, when more than one
}

// maxTickEvents is how many events a state keeps.
const maxTickEvents = 20

// Record appends an event, keeping the latest few.
func (s *ScheduleState) Record(ev TickEvent) {
	s.Events = append(s.Events, ev)
	if n := len(s.Events); n > maxTickEvents {
		s.Events = slices.Clone(s.Events[n-maxTickEvents:])
	}
}

// ScheduleRecord is a schedule as the leader reads it: its spec, its state
// and a pending trigger, each with the revision a fenced write compares.
type ScheduleRecord struct {
	Spec       ScheduleSpec
	SpecRev    int64 // mod revision of the spec
	State      ScheduleState
	StateRev   int64     // mod revision of the state (0: none yet)
	Trigger    time.Time // a pending trigger's request time (zero: none)
	TriggerRev int64
}

// ScheduleBatchID is the batch ID of a schedule's run for tick (a trigger's
// request time for a trigger): the same tick always gets the same ID.
func ScheduleBatchID(name string, tick time.Time, trigger bool) string {
	if trigger {
		// Two triggers within a second are two runs.
		return name + "-" + tick.UTC().Format("20060102T150405.000Z") + "-trigger"
	}
	return name + "-" + tick.UTC().Format("20060102T150405Z")
}

// CreateSchedule stores a new schedule with its inventory: the chunks
// first, under a version of their own, then the spec in a transaction that
// holds only if the name is unused and the chunks are still there. It
// refuses a name in use (ErrScheduleExists) and writes nothing then.
func (q *Queue) CreateSchedule(ctx context.Context, spec ScheduleSpec, hosts []inventory.Host) (ScheduleSpec, error) {
	spec = spec.withDefaults()
	if spec.CreatedAt.IsZero() {
		spec.CreatedAt = time.Now()
	}
	spec.CreatedAt = spec.CreatedAt.UTC()
	spec.UpdatedAt, spec.Since = spec.CreatedAt, spec.CreatedAt
	if err := spec.Validate(); err != nil {
		return ScheduleSpec{}, err
	}
	if len(hosts) == 0 {
		return ScheduleSpec{}, fmt.Errorf("%w: the inventory has no hosts", ErrBadSchedule)
	}
	key := q.keys.Schedule(spec.Name)
	if resp, err := q.cli.Get(ctx, key, clientv3.WithCountOnly()); err != nil {
		return ScheduleSpec{}, err
	} else if resp.Count > 0 {
		return ScheduleSpec{}, fmt.Errorf("%w: %s; change it with `patrol schedule update %s`, or pick another name", ErrScheduleExists, spec.Name, spec.Name)
	}
	up, _, err := q.uploadScheduleHosts(ctx, &spec, hosts, spec.CreatedAt)
	if err != nil {
		return ScheduleSpec{}, err
	}
	specJSON := mustJSON(spec)
	defer up.abandon(ctx, key, &specJSON)
	resp, err := q.txn(ctx, "schedule").
		If(
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(up.chunk(0)), ">", 0),
		).
		Then(clientv3.OpPut(key, specJSON), clientv3.OpDelete(q.keys.ScheduleState(spec.Name))).
		Commit()
	if err != nil {
		return ScheduleSpec{}, fmt.Errorf("store schedule: %w", err)
	}
	if !resp.Succeeded {
		return ScheduleSpec{}, fmt.Errorf("%w: %s (created meanwhile); change it with `patrol schedule update %s`", ErrScheduleExists, spec.Name, spec.Name)
	}
	up.committed = true
	return spec, nil
}

// scheduleInventory is one stored version of a schedule's inventory.
type scheduleInventory struct {
	nonce  string
	chunks int
	hosts  int
	zones  []string
}

func (inv scheduleInventory) apply(spec *ScheduleSpec) {
	spec.Nonce, spec.Chunks, spec.Hosts, spec.Zones = inv.nonce, inv.chunks, inv.hosts, inv.zones
}

// uploadScheduleHosts writes hosts as a new inventory version of the
// schedule and points spec at it.
func (q *Queue) uploadScheduleHosts(ctx context.Context, spec *ScheduleSpec, hosts []inventory.Host, now time.Time) (*upload, scheduleInventory, error) {
	zones, err := zonesOf(hosts)
	if err != nil {
		return nil, scheduleInventory{}, err
	}
	name, nonce := spec.Name, newNonce()
	up := q.upload(q.keys.ScheduleHosts(name, nonce), q.keys.ScheduleHosts(name, nonce)+"started",
		func(n int) string { return q.keys.ScheduleHostChunk(name, nonce, n) })
	n, err := up.put(ctx, hosts, now)
	if err != nil {
		// Nothing points at these chunks: delete them now.
		var none string
		up.abandon(ctx, q.keys.Schedule(name), &none)
		return nil, scheduleInventory{}, err
	}
	inv := scheduleInventory{nonce: nonce, chunks: n, hosts: len(hosts), zones: zones}
	inv.apply(spec)
	return up, inv, nil
}

// UpdateSchedule changes a schedule: change edits a copy of the stored
// spec, and hosts, when not nil, replace its inventory. The new spec (and
// the new inventory version, with the old one deleted) is written in one
// transaction that holds only if the spec is still as read, so a tick
// fired meanwhile ran wholly on the old spec or wholly on the new one. A
// change of cadence moves Since to now: the new cadence does not catch up
// on ticks from before it.
func (q *Queue) UpdateSchedule(ctx context.Context, name string, hosts []inventory.Host, now time.Time, change func(*ScheduleSpec) error) (ScheduleSpec, error) {
	now = now.UTC()
	if err := ValidateScheduleName(name); err != nil {
		return ScheduleSpec{}, err
	}
	var up *upload
	var inv scheduleInventory
	key := q.keys.Schedule(name)
	var specJSON string
	for attempt := 0; ; attempt++ {
		rec, err := q.Schedule(ctx, name)
		if err != nil {
			return ScheduleSpec{}, err
		}
		spec := rec.Spec
		spec.Params = cloneMap(spec.Params)
		if err := change(&spec); err != nil {
			return ScheduleSpec{}, err
		}
		spec.Name = name
		spec.UpdatedAt = now
		if spec.Cron != rec.Spec.Cron || spec.EveryMS != rec.Spec.EveryMS {
			spec.Since = now
		}
		if err := spec.Validate(); err != nil {
			return ScheduleSpec{}, err
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rec.SpecRev)}
		var ops []clientv3.Op
		if hosts != nil {
			if up == nil {
				if len(hosts) == 0 {
					return ScheduleSpec{}, fmt.Errorf("%w: the inventory has no hosts", ErrBadSchedule)
				}
				if up, inv, err = q.uploadScheduleHosts(ctx, &spec, hosts, now); err != nil {
					return ScheduleSpec{}, err
				}
				defer up.abandon(ctx, key, &specJSON)
			}
			inv.apply(&spec)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(up.chunk(0)), ">", 0))
			ops = append(ops, clientv3.OpDelete(q.keys.ScheduleHosts(name, rec.Spec.Nonce), clientv3.WithPrefix()))
		}
		specJSON = mustJSON(spec)
		resp, err := q.txn(ctx, "schedule").If(cmps...).Then(append(ops, clientv3.OpPut(key, specJSON))...).Commit()
		if err != nil {
			return ScheduleSpec{}, fmt.Errorf("store schedule: %w", err)
		}
		if resp.Succeeded {
			if up != nil {
				up.committed = true
			}
			return spec, nil
		}
		if attempt == 4 {
			return ScheduleSpec{}, fmt.Errorf("schedule %s kept changing while it was updated; try again: %w", name, ErrConflict)
		}
	}
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// DeleteSchedule deletes a schedule, its inventory, state, pending trigger
// and run index in one transaction. Its batches stay (until the global
// retention); a run in flight finishes, and no tick fires after: the
// firing transaction compares the spec.
func (q *Queue) DeleteSchedule(ctx context.Context, name string) error {
	return q.onSchedule(ctx, name,
		clientv3.OpDelete(q.keys.Schedule(name)),
		clientv3.OpDelete(q.keys.ScheduleHosts(name, ""), clientv3.WithPrefix()),
		clientv3.OpDelete(q.keys.ScheduleState(name)),
		clientv3.OpDelete(q.keys.ScheduleTrigger(name)),
		clientv3.OpDelete(q.keys.ScheduleRuns(name), clientv3.WithPrefix()),
	)
}

func scheduleNotFound(name string) error {
	return fmt.Errorf("%w: %s; `patrol schedule list` shows the schedules there are", ErrScheduleNotFound, name)
}

// TriggerSchedule asks the leader to run a schedule now, outside its
// cadence (and whatever its overlap policy). A trigger asked for while
// another is pending replaces it: one run.
func (q *Queue) TriggerSchedule(ctx context.Context, name string, now time.Time) error {
	return q.onSchedule(ctx, name, clientv3.OpPut(q.keys.ScheduleTrigger(name), now.UTC().Format(time.RFC3339Nano)))
}

// onSchedule applies ops in one transaction if the schedule exists, and
// says it does not otherwise.
func (q *Queue) onSchedule(ctx context.Context, name string, ops ...clientv3.Op) error {
	if err := ValidateScheduleName(name); err != nil {
		return err
	}
	resp, err := q.txn(ctx, "schedule").
		If(clientv3.Compare(clientv3.CreateRevision(q.keys.Schedule(name)), ">", 0)).
		Then(ops...).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return scheduleNotFound(name)
	}
	return nil
}

// Schedule reads one schedule.
func (q *Queue) Schedule(ctx context.Context, name string) (ScheduleRecord, error) {
	if err := ValidateScheduleName(name); err != nil {
		return ScheduleRecord{}, err
	}
	resp, err := q.txn(ctx, "read").Then(
		clientv3.OpGet(q.keys.Schedule(name)),
		clientv3.OpGet(q.keys.ScheduleState(name)),
		clientv3.OpGet(q.keys.ScheduleTrigger(name)),
	).Commit()
	if err != nil {
		return ScheduleRecord{}, err
	}
	specs := resp.Responses[0].GetResponseRange().Kvs
	if len(specs) == 0 {
		return ScheduleRecord{}, scheduleNotFound(name)
	}
	var rec ScheduleRecord
	if err := decodeKV(specs[0], &rec.Spec); err != nil {
		return ScheduleRecord{}, err
	}
	rec.SpecRev = specs[0].ModRevision
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := decodeKV(kvs[0], &rec.State); err != nil {
			return ScheduleRecord{}, err
		}
		rec.StateRev = kvs[0].ModRevision
	}
	if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
		rec.Trigger, _ = time.Parse(time.RFC3339Nano, string(kvs[0].Value))
		rec.TriggerRev = kvs[0].ModRevision
		if rec.Trigger.IsZero() {
			rec.Trigger = time.Unix(0, 0).UTC() // unreadable: still a request
		}
	}
	return rec, nil
}

// Schedules reads every schedule at one revision, sorted by name. A spec
// or state that does not decode is reported in bad (the others are
// returned): see QuarantineSchedule.
func (q *Queue) Schedules(ctx context.Context) (recs []ScheduleRecord, bad []BadValue, err error) {
	resp, err := q.txn(ctx, "read").Then(
		clientv3.OpGet(q.keys.Schedules(), clientv3.WithPrefix()),
		clientv3.OpGet(q.keys.ScheduleStates(), clientv3.WithPrefix()),
		clientv3.OpGet(q.keys.ScheduleTriggers(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]*ScheduleRecord{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var rec ScheduleRecord
		if err := decodeKV(kv, &rec.Spec); err != nil {
			bad = append(bad, BadValue{KV: kv, Err: err})
			continue
		}
		name, err := q.keys.ParseSchedule(string(kv.Key))
		if err == nil && rec.Spec.Name != name {
			err = fmt.Errorf("%w at %s: the spec names schedule %q", ErrBadValue, kv.Key, rec.Spec.Name)
		}
		if err != nil {
			bad = append(bad, BadValue{KV: kv, Err: err})
			continue
		}
		rec.SpecRev = kv.ModRevision
		byName[name] = &rec
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		rec := byName[strings.TrimPrefix(string(kv.Key), q.keys.ScheduleStates())]
		if rec == nil {
			continue
		}
		if err := decodeKV(kv, &rec.State); err != nil {
			bad = append(bad, BadValue{KV: kv, Err: err})
			rec.State = ScheduleState{}
		}
		rec.StateRev = kv.ModRevision
	}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		rec := byName[strings.TrimPrefix(string(kv.Key), q.keys.ScheduleTriggers())]
		if rec == nil {
			continue
		}
		rec.Trigger, _ = time.Parse(time.RFC3339Nano, string(kv.Value))
		if rec.Trigger.IsZero() {
			rec.Trigger = time.Unix(0, 0).UTC()
		}
		rec.TriggerRev = kv.ModRevision
	}
	for _, rec := range byName {
		recs = append(recs, *rec)
	}
	slices.SortFunc(recs, func(a, b ScheduleRecord) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	return recs, bad, nil
}

// QuarantineSchedule moves a malformed schedule record aside (fenced), so
// that the leader reports it once and the other schedules keep firing.
func (q *Queue) QuarantineSchedule(ctx context.Context, fence Fence, b BadValue) error {
	return q.quarantine(ctx, fence, b.KV, b.Err)
}

// QuarantineScheduleSpec moves aside a schedule spec that decodes but
// cannot be used (its cadence does not parse), if it is still as read;
// ErrConflict if it changed meanwhile (nothing is moved).
func (q *Queue) QuarantineScheduleSpec(ctx context.Context, fence Fence, rec ScheduleRecord, why error) error {
	resp, err := q.cli.Get(ctx, q.keys.Schedule(rec.Spec.Name))
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].ModRevision != rec.SpecRev {
		return ErrConflict // changed meanwhile: judged again on the next pass
	}
	return q.quarantine(ctx, fence, resp.Kvs[0], why)
}

// LoadScheduleHosts reads a schedule's current inventory.
func (q *Queue) LoadScheduleHosts(ctx context.Context, spec ScheduleSpec) ([]inventory.Host, error) {
	return q.loadChunks(ctx, func(n int) string { return q.keys.ScheduleHostChunk(spec.Name, spec.Nonce, n) },
		spec.Chunks, spec.Hosts, "schedule "+spec.Name)
}

// Fire is one run of a schedule for the leader to create.
type Fire struct {
	Tick    time.Time     // the tick, or the trigger's request time
	Trigger bool          // a `patrol schedule trigger` run
	State   ScheduleState // the schedule's state once the run exists
	Now     time.Time     // the batch's creation time
}

// FireSchedule creates the batch of one run of a schedule, as the leader.
// The inventory is copied into the batch first (under a nonce private to
// this attempt, as a submit stores it), then one transaction writes the
// batch spec, its active-index entry, the run index entry and the
// schedule's new state, holding only if:
//
//   - the writer still leads (fence),
//   - the batch ID is unused (the tick was not fired before),
//   - the schedule's spec and state are as rec read them (not updated,
//     paused or deleted; no other tick dealt with meanwhile),
//   - for a trigger, the trigger request is the one read (and it is
//     deleted).
//
// It reports created=false when the tick's batch already existed (an
// earlier term fired it, or this attempt's reply was lost); the state is
// then still written. ErrNotLeader: the fence broke; ErrConflict: the
// schedule changed meanwhile, read it again.
func (q *Queue) FireSchedule(ctx context.Context, fence Fence, rec ScheduleRecord, f Fire) (batch string, created bool, err error) {
	spec := rec.Spec
	id := ScheduleBatchID(spec.Name, f.Tick, f.Trigger)
	hosts, err := q.LoadScheduleHosts(ctx, spec)
	if errors.Is(err, ErrBadValue) {
		// An update -i or a delete since rec was read removes the
		// inventory version rec names: that is a race lost, not a
		// malformed schedule.
		if cur, gerr := q.cli.Get(ctx, q.keys.Schedule(spec.Name)); gerr == nil &&
			(len(cur.Kvs) == 0 || cur.Kvs[0].ModRevision != rec.SpecRev) {
			return id, false, ErrConflict
		}
	}
	if err != nil {
		return id, false, err
	}
	cmps, ops := q.scheduleGuard(rec, f, id)
	_, existed, err := q.submit(ctx, SubmitRequest{
		ID: id, Check: spec.Check, Params: spec.Params, Hosts: hosts, Policy: spec.Policy, Priority: spec.Priority, Shards: spec.Shards,
		Now: f.Now, Schedule: spec.Name, ScheduledFor: f.Tick,
	}, batchGuard{op: "schedule", fence: &fence, cmps: cmps, ops: ops, anyContent: true})
	if err != nil {
		return id, false, err
	}
	if !existed {
		return id, true, nil
	}
	// The batch was there: record the state all the same (the same
	// guards), so the tick counts as dealt with.
	resp, err := q.txn(ctx, "schedule").If(append(cmps, fence.Cmp())...).Then(ops...).Commit()
	if err != nil {
		return id, false, err
	}
	if !resp.Succeeded {
		if err := q.whyRejected(ctx, fence); err != nil {
			return id, false, err
		}
		return id, false, ErrConflict
	}
	return id, false, nil
}

// scheduleGuard is what a run's creation compares and writes beside the
// batch.
func (q *Queue) scheduleGuard(rec ScheduleRecord, f Fire, batch string) ([]clientv3.Cmp, []clientv3.Op) {
	name := rec.Spec.Name
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(q.keys.Schedule(name)), "=", rec.SpecRev),
		clientv3.Compare(clientv3.ModRevision(q.keys.ScheduleState(name)), "=", rec.StateRev),
	}
	ops := []clientv3.Op{
		clientv3.OpPut(q.keys.ScheduleState(name), mustJSON(f.State)),
		clientv3.OpPut(q.keys.ScheduleRun(name, batch), f.Tick.UTC().Format(time.RFC3339Nano)),
	}
	if f.Trigger {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(q.keys.ScheduleTrigger(name)), "=", rec.TriggerRev))
		ops = append(ops, clientv3.OpDelete(q.keys.ScheduleTrigger(name)))
	}
	return cmps, ops
}

// SetScheduleState records what the leader did with ticks it did not run
// (skipped, buffered, missed), if the schedule and its state are as rec
// read them. ErrNotLeader: the fence broke; ErrConflict: read again.
func (q *Queue) SetScheduleState(ctx context.Context, fence Fence, rec ScheduleRecord, st ScheduleState) error {
	name := rec.Spec.Name
	resp, err := q.txn(ctx, "schedule").
		If(fence.Cmp(),
			clientv3.Compare(clientv3.ModRevision(q.keys.Schedule(name)), "=", rec.SpecRev),
			clientv3.Compare(clientv3.ModRevision(q.keys.ScheduleState(name)), "=", rec.StateRev)).
		Then(clientv3.OpPut(q.keys.ScheduleState(name), mustJSON(st))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		if err := q.whyRejected(ctx, fence); err != nil {
			return err
		}
		return ErrConflict
	}
	return nil
}

// ScheduleRun is one entry of a schedule's run index.
type ScheduleRun struct {
	Batch string    `json:"batch_id"`
	Tick  time.Time `json:"tick"`
}

// ScheduleRuns lists a schedule's runs, oldest first. Runs whose batch was
// purged by the global retention are still listed until the leader prunes
// the index.
func (q *Queue) ScheduleRuns(ctx context.Context, name string) ([]ScheduleRun, error) {
	prefix := q.keys.ScheduleRuns(name)
	var out []ScheduleRun
	resp, err := q.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	for _, kv := range resp.Kvs {
		t, _ := time.Parse(time.RFC3339Nano, string(kv.Value))
		out = append(out, ScheduleRun{Batch: strings.TrimPrefix(string(kv.Key), prefix), Tick: t})
	}
	slices.SortStableFunc(out, func(a, b ScheduleRun) int {
		if c := a.Tick.Compare(b.Tick); c != 0 {
			return c
		}
		return strings.Compare(a.Batch, b.Batch)
	})
	return out, nil
}

// PurgeScheduleRun deletes one of a schedule's finished runs and its index
// entry (the per-schedule history), as the leader. A run still active is
// left alone. An index entry whose batch is already gone is just deleted.
func (q *Queue) PurgeScheduleRun(ctx context.Context, fence Fence, name, batch string) error {
	resp, err := q.txn(ctx, "purge").
		If(fence.Cmp(), clientv3.Compare(clientv3.CreateRevision(q.keys.ActiveBatch(batch)), "=", 0)).
		Then(append(q.purgeOps(batch), clientv3.OpDelete(q.keys.ScheduleRun(name, batch)))...).
		Commit()
	if err != nil {
		return err
	}
	return q.fenceLost(ctx, fence, resp.Succeeded)
}

// CleanScheduleUploads deletes schedule inventory versions that no spec
// points at and whose upload started before before: what a create or
// `update -i` that died half-way left. It returns how many it deleted.
func (q *Queue) CleanScheduleUploads(ctx context.Context, fence Fence, before time.Time) (int, error) {
	root := q.keys.ScheduleInventories()
	resp, err := q.cli.Get(ctx, root, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, err
	}
	type version struct{ name, nonce string }
	started := map[version]bool{}
	for _, kv := range resp.Kvs {
		parts := strings.Split(strings.TrimPrefix(string(kv.Key), root), "/")
		if len(parts) == 3 && parts[2] == "started" {
			started[version{parts[0], parts[1]}] = true
		}
	}
	cleaned := 0
	for v := range started {
		at, err := q.cli.Get(ctx, q.keys.ScheduleHosts(v.name, v.nonce)+"started")
		if err != nil {
			return cleaned, err
		}
		if len(at.Kvs) == 0 {
			continue
		}
		if t, err := time.Parse(time.RFC3339, string(at.Kvs[0].Value)); err == nil && t.After(before) {
			continue
		}
		specKey := q.keys.Schedule(v.name)
		cur, err := q.cli.Get(ctx, specKey)
		if err != nil {
			return cleaned, err
		}
		var rev int64
		if len(cur.Kvs) > 0 {
			var spec ScheduleSpec
			if decodeKV(cur.Kvs[0], &spec) == nil && spec.Nonce == v.nonce {
				continue // the current version
			}
			rev = cur.Kvs[0].ModRevision
		}
		// Only if the spec is still as read: an update that points the
		// spec at this version meanwhile wins.
		r, err := q.txn(ctx, "purge").
			If(fence.Cmp(), clientv3.Compare(clientv3.ModRevision(specKey), "=", rev)).
			Then(clientv3.OpDelete(q.keys.ScheduleHosts(v.name, v.nonce), clientv3.WithPrefix())).
			Commit()
		if err != nil {
			return cleaned, err
		}
		if err := q.fenceLost(ctx, fence, r.Succeeded); err != nil {
			return cleaned, err
		}
		if r.Succeeded {
			cleaned++
		}
	}
	return cleaned, nil
}

// Active reports whether a batch still has work (it is in the active index).
func (q *Queue) Active(ctx context.Context, batch string) (bool, error) {
	n, err := q.count(ctx, q.keys.ActiveBatch(batch))
	return n > 0, err
}

// PauseSchedule pauses a schedule with a note saying why: no tick runs
// until it is resumed (a trigger still does). Pausing a paused schedule
// replaces its note and keeps when it was paused.
func (q *Queue) PauseSchedule(ctx context.Context, name, note string, now time.Time) (ScheduleSpec, error) {
	now = now.UTC()
	return q.UpdateSchedule(ctx, name, nil, now, func(sp *ScheduleSpec) error {
		if !sp.Paused {
			sp.PausedAt = now
		}
		sp.Paused, sp.PauseNote = true, note
		return nil
	})
}

// ResumeSchedule resumes a paused schedule from its next tick after now
// (ticks while it was paused do not run). It reports whether the schedule
// was paused; resuming an active one changes nothing.
func (q *Queue) ResumeSchedule(ctx context.Context, name string, now time.Time) (wasPaused bool, err error) {
	now = now.UTC()
	_, err = q.UpdateSchedule(ctx, name, nil, now, func(sp *ScheduleSpec) error {
		wasPaused = sp.Paused
		if sp.Paused {
			sp.Paused, sp.PauseNote, sp.PausedAt, sp.Since = false, "", time.Time{}, now
		}
		return nil
	})
	return wasPaused, err
}
