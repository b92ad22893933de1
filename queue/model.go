package queue

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

var (
	// ErrBadKey is a key under the prefix that does not parse.
	ErrBadKey = errors.New("queue: malformed key")
	// ErrBadValue is a value in etcd that does not decode.
	ErrBadValue = errors.New("queue: malformed value")
	// ErrBatchExists is a submit reusing a batch ID with other content.
	ErrBatchExists = errors.New("queue: batch ID already used with different content")
	// ErrBatchActive is a batch still running where it must not be.
	ErrBatchActive = errors.New("queue: batch is active")
	// ErrBatchNotFound is a batch ID with no spec in etcd.
	ErrBatchNotFound = errors.New("queue: batch not found")
	// ErrConflict is a leader transaction that lost a race with another
	// write to the same keys; reading again and retrying is safe.
	ErrConflict = errors.New("queue: conflicting write, retry")
	// ErrNotLeader is a scheduler write rejected by its fence: the writer
	// is no longer the elected leader.
	ErrNotLeader = errors.New("queue: fenced write rejected: not the leader")
	// ErrBadBatchID is a batch ID Patrol cannot use as a key part.
	ErrBadBatchID = errors.New("queue: invalid batch ID")
)

// Status is where a task stands. See doc.go for the state machine.
type Status string

// Task statuses. Pending, retrying and running are derived from where the
// task's record is; the others are final and come from a committed Result.
const (
	StatusPending   Status = "pending"   // ready to be claimed, or not sharded yet
	StatusRetrying  Status = "retrying"  // waiting out a backoff before its next attempt
	StatusRunning   Status = "running"   // claimed by a worker
	StatusOK        Status = "ok"        // the host passed the check
	StatusWarn      Status = "warn"      // the host passed, but near a threshold (a certificate about to expire, a Nagios WARNING)
	StatusFail      Status = "fail"      // the check ran and the host failed it
	StatusError     Status = "error"     // the check could not decide (an attempt's outcome; final only in old data)
	StatusDead      Status = "dead"      // out of attempts; the last error is kept
	StatusCancelled Status = "cancelled" // the batch was cancelled before the task finished
	StatusSkipped   Status = "skipped"   // the batch stopped early (max failures) before the task started
)

// Final reports whether a status ends a task's round.
func (s Status) Final() bool {
	switch s {
	case StatusOK, StatusWarn, StatusFail, StatusError, StatusDead, StatusCancelled, StatusSkipped:
		return true
	}
	return false
}

// Passed reports whether a result with this status means the host passed
// the check: ok, or warn (passed, near a threshold).
func (s Status) Passed() bool { return s == StatusOK || s == StatusWarn }

// Statuses lists every status in the order Patrol shows them: the final
// ones from best to worst, then where unfinished tasks stand.
func Statuses() []Status {
	return []Status{StatusOK, StatusWarn, StatusFail, StatusError, StatusDead, StatusCancelled, StatusSkipped,
		StatusRunning, StatusRetrying, StatusPending}
}

// Failed reports whether a result with this status counts against a
// batch's --max-failures: the host failed the check, or it could not be
// checked. A warning is not a failure.
func (s Status) Failed() bool {
	return s == StatusFail || s == StatusDead || s == StatusError
}

// DefaultShards is the fewest ready queues (shards) a batch is spread
// over, MaxShards the most, and ShardHosts about how many hosts a batch
// puts in each of its shards beyond DefaultShards of them (ShardsFor).
const (
	DefaultShards = 16
	MaxShards     = 256
	ShardHosts    = 4096
)

// ShardsFor is how many shards a batch of n hosts is spread over: enough
// that each holds about ShardHosts hosts, from DefaultShards to
// MaxShards. A worker's listing reads a range of one batch's part of a
// shard, and etcd counts every key from the range's start to its end
// even when it returns a few: with 16 shards a million-host batch put
// 62,500 keys in each, and counting them took most of etcd's CPU. With
// the shards growing with the batch, a listing costs about the same for
// a million hosts as for a hundred thousand.
func ShardsFor(n int) int {
	return min(max(DefaultShards, (n+ShardHosts-1)/ShardHosts), MaxShards)
}

// Policy is how a batch's tasks are run and retried. Durations are in
// milliseconds so that the stored JSON is plain numbers.
type Policy struct {
	MaxAttempts   int    `json:"max_attempts"`             // attempts per round, at least 1
	TimeoutMS     int64  `json:"timeout_ms"`               // per attempt
	BackoffMS     int64  `json:"backoff_ms"`               // first retry delay; doubles each attempt, with jitter
	MaxBackoffMS  int64  `json:"max_backoff_ms"`           // cap on the retry delay
	RetryFailures bool   `json:"retry_failures,omitempty"` // retry "fail" verdicts too, not only errors
	MaxFailures   string `json:"max_failures,omitempty"`   // "N" or "N%": stop the batch past it
	Parallel      int    `json:"parallel,omitempty"`       // at most this many tasks claimable or running at once; 0: no cap
}

// Policy defaults.
const (
	DefaultMaxAttempts = 3
	DefaultTimeout     = 60 * time.Second
	DefaultBackoff     = time.Second
	DefaultMaxBackoff  = time.Minute
)

// withDefaults fills zero fields.
// DefaultPolicy is the policy of a batch submitted with no options.
func DefaultPolicy() Policy { return Policy{}.withDefaults() }

func (p Policy) withDefaults() Policy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.TimeoutMS == 0 {
		p.TimeoutMS = DefaultTimeout.Milliseconds()
	}
	if p.BackoffMS == 0 {
		p.BackoffMS = DefaultBackoff.Milliseconds()
	}
	if p.MaxBackoffMS == 0 {
		p.MaxBackoffMS = DefaultMaxBackoff.Milliseconds()
	}
	return p
}

// Validate reports the first bad field, phrased for the operator.
func (p Policy) Validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("max attempts %d: must be at least 1", p.MaxAttempts)
	case p.TimeoutMS < 1:
		return fmt.Errorf("timeout %s: must be positive", p.Timeout())
	case p.Parallel < 0:
		return fmt.Errorf("parallel %d: must be 0 (no cap) or more", p.Parallel)
	case p.BackoffMS < 0 || p.MaxBackoffMS < p.BackoffMS:
		return fmt.Errorf("backoff %s, max backoff %s: need 0 <= backoff <= max backoff", p.backoff(), time.Duration(p.MaxBackoffMS)*time.Millisecond)
	}
	if p.MaxFailures != "" {
		if _, err := ParseMaxFailures(p.MaxFailures, 1); err != nil {
			return err
		}
	}
	return nil
}

// Timeout is the per-attempt timeout.
func (p Policy) Timeout() time.Duration { return time.Duration(p.TimeoutMS) * time.Millisecond }

func (p Policy) backoff() time.Duration { return time.Duration(p.BackoffMS) * time.Millisecond }

// Backoff is the delay before attempt next (2, 3, ...): exponential from
// BackoffMS, capped at MaxBackoffMS, with "equal jitter" (half fixed, half
// random) so that a fleet of failures does not retry in lockstep.
func (p Policy) Backoff(next int, rnd func(int64) int64) time.Duration {
	d := p.BackoffMS
	for i := 2; i < next && d < p.MaxBackoffMS; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoffMS)
	if d <= 1 {
		return time.Duration(d) * time.Millisecond
	}
	return time.Duration(d/2+rnd(d/2+1)) * time.Millisecond
}

// ParseMaxFailures turns "N" or "N%" into a count of failed hosts, out of
// total, beyond which the batch stops.
func ParseMaxFailures(s string, total int) (int, error) {
	bad := fmt.Errorf("max failures %q: write a count like 10 or a percentage like 5%%", s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil || f < 0 || f > 100 {
			return 0, bad
		}
		return int(f * float64(total) / 100), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, bad
	}
	return n, nil
}

// BatchSpec is what an operator submitted. Stored at Keys.BatchSpec.
type BatchSpec struct {
	ID        string            `json:"id"`
	Check     string            `json:"check"`
	Params    map[string]string `json:"params,omitempty"`
	Policy    Policy            `json:"policy"`
	Hosts     int               `json:"hosts"`
	Zones     []string          `json:"zones"`              // the zones its hosts are in, sorted
	Shards    int               `json:"shards"`             // per zone
	Nonce     string            `json:"nonce"`              // which chunk set holds the inventory
	Chunks    int               `json:"chunks"`             // how many inventory chunks
	Priority  int               `json:"priority,omitempty"` // MinPriority to MaxPriority; 0 (normal) by default. See PriorityWeight
	Digest    string            `json:"digest"`             // of check, params, policy and hosts: idempotent resubmits
	CreatedAt time.Time         `json:"created_at"`
	// Schedule names the schedule that fired the batch ("" for a submit),
	// and ScheduledFor the tick it ran for (its trigger time for a
	// `patrol schedule trigger`).
	Schedule     string    `json:"schedule,omitempty"`
	ScheduledFor time.Time `json:"scheduled_for,omitzero"`
}

// Batch priorities: a batch's share of the workers' listings follows its
// weight, PriorityWeight. See ParsePriority for what an operator writes.
const (
	MinPriority    = -3
	PriorityLow    = -2
	PriorityNormal = 0
	PriorityHigh   = 2
	MaxPriority    = 3
)

// PriorityWeight is a priority's weight in the workers' listings:
// 2^(p+3), from 1 at -3 to 64 at 3, so each step doubles a batch's share
// (high 32, normal 8, low 2). Among batches with ready tasks in a zone,
// a listing hands out tasks in proportion to their weights, by a smooth
// weighted round robin that carries over from one listing to the next:
// a batch of weight w among batches of total weight W gets w of every W
// tasks handed out, so at least one in every W. A priority out of range
// counts as the nearest one in range.
func PriorityWeight(p int) int {
	return 1 << (min(max(p, MinPriority), MaxPriority) - MinPriority)
}

// PriorityName is how a priority is shown: high, normal or low for those
// levels, the number otherwise.
func PriorityName(p int) string {
	switch p {
	case PriorityHigh:
		return "high"
	case PriorityNormal:
		return "normal"
	case PriorityLow:
		return "low"
	}
	return strconv.Itoa(p)
}

// ParsePriority reads a priority as an operator writes it: high, normal or
// low, or a whole number from MinPriority to MaxPriority (low is -2,
// normal 0, high 2).
func ParsePriority(s string) (int, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "high":
		return PriorityHigh, nil
	case "normal", "":
		return PriorityNormal, nil
	case "low":
		return PriorityLow, nil
	}
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < MinPriority || p > MaxPriority {
		return 0, fmt.Errorf("priority %q: give high, normal or low, or a number from %d to %d (low is %d, normal %d, high %d)",
			s, MinPriority, MaxPriority, PriorityLow, PriorityNormal, PriorityHigh)
	}
	return p, nil
}

// ValidatePriority reports a priority out of range, phrased for the operator.
func ValidatePriority(p int) error {
	if p < MinPriority || p > MaxPriority {
		return fmt.Errorf("priority %d: give a number from %d to %d (low is %d, normal %d, high %d)",
			p, MinPriority, MaxPriority, PriorityLow, PriorityNormal, PriorityHigh)
	}
	return nil
}

// Attempt is the outcome of one earlier run of a task.
type Attempt struct {
	Attempt    int               `json:"attempt"`
	Status     Status            `json:"status"`
	Message    string            `json:"message"`
	Worker     string            `json:"worker,omitempty"`
	DurationMS int64             `json:"duration_ms"`
	FinishedAt time.Time         `json:"finished_at"`
	Round      int               `json:"round,omitempty"`
	Details    map[string]string `json:"details,omitempty"` // what the check recorded: status code, exit code, output tail
}

// Task is one host of one batch, as stored at Keys.ReadyTask,
// Keys.DelayedTask and inside a Running group.
type Task struct {
	Batch     string         `json:"batch"`
	ID        string         `json:"id"`
	Zone      string         `json:"zone"`
	Shard     int            `json:"shard"`
	Host      inventory.Host `json:"host"`
	Round     int            `json:"round,omitempty"` // 0 for the first round, +1 per `patrol retry`
	Attempt   int            `json:"attempt"`         // the attempt this record runs as, from 1
	NotBefore time.Time      `json:"not_before,omitzero"`
	History   []Attempt      `json:"history,omitempty"` // earlier attempts, oldest first
}

// Claim is the value of a group's claim key, attached to the worker's lease.
type Claim struct {
	Worker    string    `json:"worker"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// Running is a claimed group's durable record at Keys.RunningGroup: the
// tasks the worker took, so that they can be requeued when the claim goes.
type Running struct {
	Worker    string    `json:"worker"`
	ClaimedAt time.Time `json:"claimed_at"`
	Deadline  time.Time `json:"deadline"` // when the slowest task's attempt times out
	Tasks     []Task    `json:"tasks"`
}

// Result is a task's outcome for its round, committed once. Stored at
// Keys.Result.
type Result struct {
	Host       string            `json:"host"`
	Status     Status            `json:"status"`
	Attempts   int               `json:"attempts"`
	Message    string            `json:"message"`
	DurationMS int64             `json:"duration_ms"`
	Worker     string            `json:"worker"`
	FinishedAt time.Time         `json:"finished_at"`
	Round      int               `json:"round,omitempty"`
	History    []Attempt         `json:"history,omitempty"` // earlier attempts, oldest first
	Details    map[string]string `json:"details,omitempty"` // what the check recorded: status code, exit code, output tail
}

// Summary is a finished batch's tally, written once at Keys.BatchSummary.
type Summary struct {
	Total      int            `json:"total"`
	Counts     map[Status]int `json:"counts"`
	FinishedAt time.Time      `json:"finished_at"`
}

// Failed reports whether any host did not pass: it ended neither ok nor
// warn. A batch whose hosts all passed, some with warnings, has not failed.
func (s Summary) Failed() bool { return s.Counts[StatusOK]+s.Counts[StatusWarn] != s.Total }

// Warned reports whether any host passed with a warning.
func (s Summary) Warned() bool { return s.Counts[StatusWarn] > 0 }

// LeaderInfo is the value a scheduler campaigns with.
type LeaderInfo struct {
	ID    string    `json:"id"`
	Since time.Time `json:"since"`
}

var batchIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateBatchID reports whether id can name a batch.
func ValidateBatchID(id string) error {
	if !batchIDRe.MatchString(id) {
		return fmt.Errorf("%w %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadBatchID, id)
	}
	return nil
}

// DefaultZone is the zone of a host with no zone variable.
const DefaultZone = "default"

var zoneRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ZoneOf returns a host's zone: its "zone" variable, or DefaultZone.
func ZoneOf(h inventory.Host) string {
	if z := h.Vars["zone"]; z != "" {
		return z
	}
	return DefaultZone
}

// ValidateZone reports whether z can name a zone.
func ValidateZone(z string) error {
	if !zoneRe.MatchString(z) {
		return fmt.Errorf("invalid zone %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", z)
	}
	return nil
}

// ShardOf maps a host to one of n shards; the same host always lands in the
// same shard.
func ShardOf(host string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(host))
	return int(h.Sum32() % uint32(n))
}

// digest fingerprints a batch's content so that resubmitting the same batch
// ID is recognised as the same batch.
func digest(check string, params map[string]string, policy Policy, priority int, hosts []inventory.Host) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	enc := json.NewEncoder(h)
	enc.Encode(check)
	enc.Encode(policy)
	if priority != PriorityNormal {
		// Only when set: a batch of normal priority keeps the digest it
		// had before priorities existed.
		enc.Encode(map[string]int{"priority": priority})
	}
	for _, k := range keys {
		enc.Encode([2]string{k, params[k]})
	}
	for _, host := range hosts {
		enc.Encode(host) // map keys are sorted by encoding/json
	}
	return hex.EncodeToString(h.Sum(nil))
}

// decode unmarshals an etcd value, wrapping failures in ErrBadValue with the key.
func decode(key string, val []byte, v any) error {
	if err := unmarshal(val, v); err != nil {
		return fmt.Errorf("%w at %s: %v", ErrBadValue, key, err)
	}
	return nil
}

// unmarshal is json.Unmarshal, calling a versioned record's UnmarshalJSON
// directly: it checks val as json.Unmarshal does, and through
// json.Unmarshal val would be scanned twice more first, for every task
// listed and every result followed.
func unmarshal(val []byte, v any) error {
	switch r := v.(type) {
	case *Task:
		if r != nil {
			return r.UnmarshalJSON(val)
		}
	case *Result:
		if r != nil {
			return r.UnmarshalJSON(val)
		}
	case *Running:
		if r != nil {
			return r.UnmarshalJSON(val)
		}
	}
	return json.Unmarshal(val, v) // also what a nil record pointer gets: json's error
}

func mustJSON(v any) string {
	b, err := marshal(v)
	if err != nil {
		panic(fmt.Sprintf("queue: marshal %T: %v", v, err)) // only plain structs are marshalled
	}
	return string(b)
}

// marshal is json.Marshal, calling a versioned record's MarshalJSON
// directly: it writes compact, escaped JSON, which json.Marshal would only
// scan again to compact it.
func marshal(v any) ([]byte, error) {
	switch r := v.(type) {
	case Task:
		return r.MarshalJSON()
	case Result:
		return r.MarshalJSON()
	case Running:
		return r.MarshalJSON()
	case *Task:
		if r != nil {
			return r.MarshalJSON()
		}
	case *Result:
		if r != nil {
			return r.MarshalJSON()
		}
	}
	return json.Marshal(v) // a nil record pointer marshals as null
}
