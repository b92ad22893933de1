package worker

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// requestLimit is how many claim transactions, and apart from them how
// many commit transactions, a worker keeps in flight at once. It follows
// the latency of those transactions relative to the worker's own
// baseline, not to a fixed figure, so that a worker 100 ms from a healthy
// etcd, or on a busy machine, keeps its pipeline full, and a worker whose
// etcd is saturated sends fewer, larger transactions until it recovers.
//
// It is a gradient limit, after Netflix's concurrency-limits (Gradient2).
// It starts low (initialLimit), so that the baseline is measured before
// the worker's own load can raise it; every window of samples (the limit,
// at least minWindow: about one round trip's worth) gives a current
// latency (their median); the
// baseline is the lowest current latency seen, drifting up slowly (so a
// lasting change of link, such as a move to a farther etcd, becomes the
// new normal within a few hundred transactions); the gradient is
// tolerance × baseline / current, clamped to [0.5, 1]. While latency
// stays within tolerance of the baseline (gradient 1) the limit grows, up
// to MaxRequestLimit: it doubles each window until it is first cut (a slow
// start, as TCP's), then grows by √limit; when latency rises past the
// tolerance, the limit is multiplied by the gradient, down to 1.
//
// Check concurrency is never lowered: a worker's --concurrency is what
// it runs. What loads etcd is the worker's requests, and fewer requests in
// flight means fewer and larger transactions for the same tasks.
type requestLimit struct {
	log zerolog.Logger
	// onChange is told each new limit (for the metric).
	onChange func(limit int)

	mu       sync.Mutex
	fixed    bool // set by fix: latency is still sampled, the limit stays
	cut      bool // the limit was lowered once: it grows by √limit, not doubling
	limit    float64
	shown    int
	baseline time.Duration
	window   []time.Duration
	recent   [64]time.Duration // a ring of the last samples, for deadlines
	samples  int
}

const (
	MaxRequestLimit  = 8   // the ceiling: transactions of each kind in flight
	initialLimit     = 2   // where the limit starts: it grows while latency holds
	minWindow        = 4   // samples per limit decision, or the limit if higher
	latencyTolerance = 2.0 // current latency may be this many times the baseline
	baselineDrift    = 50  // windows for the baseline to follow a lasting rise most of the way
)

func newRequestLimit(log zerolog.Logger, onChange func(int)) *requestLimit {
	return &requestLimit{log: log, onChange: onChange, limit: initialLimit, shown: initialLimit}
}

// fix pins the limit at n.
func (l *requestLimit) fix(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fixed, l.limit, l.shown = true, float64(n), n
}

// get returns the current limit.
func (l *requestLimit) get() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shown
}

// observe records one transaction's latency and, once a window is full,
// moves the limit.
func (l *requestLimit) observe(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recent[l.samples%len(l.recent)] = d
	l.samples++
	l.window = append(l.window, d)
	if len(l.window) < max(minWindow, l.shown) {
		return
	}
	slices.Sort(l.window)
	cur := l.window[len(l.window)/2]
	l.window = l.window[:0]
	if l.fixed {
		return
	}
	if l.baseline == 0 || cur < l.baseline {
		l.baseline = cur
	} else {
		l.baseline += (cur - l.baseline) / baselineDrift
	}
	gradient := math.Max(0.5, math.Min(1, latencyTolerance*float64(l.baseline)/float64(max(cur, 1))))
	switch {
	case gradient < 1:
		l.limit = math.Max(1, math.Floor(l.limit*gradient))
		l.cut = true
	case !l.cut:
		l.limit = math.Min(MaxRequestLimit, 2*l.limit) // slow start: doubles until the first cut
	default:
		l.limit = math.Min(MaxRequestLimit, l.limit+math.Sqrt(l.limit))
	}
	next := int(l.limit)
	if next == l.shown {
		return
	}
	reason := "etcd latency within tolerance of the baseline"
	if !l.cut {
		reason = "slow start: etcd latency holds as more requests go out"
	}
	if gradient < 1 {
		reason = "etcd latency rose above the baseline: sending fewer, larger transactions"
	}
	l.log.Info().Int("from", l.shown).Int("to", next).Dur("latency", cur).Dur("baseline", l.baseline).
		Float64("ratio", math.Round(float64(cur)/float64(l.baseline)*10)/10).Str("reason", reason).Msg("etcd request limit changed")
	l.shown = next
	if l.onChange != nil {
		l.onChange(next)
	}
}

// sample records a request's latency for deadlines only (a listing: a
// read, which says little of etcd's write load).
func (l *requestLimit) sample(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recent[l.samples%len(l.recent)] = d
	l.samples++
}

// base returns the baseline latency, 0 before the first window.
func (l *requestLimit) base() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.baseline
}

// timeout is the deadline for one etcd call of the claim and commit path:
// four times the 90th percentile of the recent transactions, and never
// below floor. A link that is merely slow never runs it out; one that has
// stopped answering does, after about floor. The slowest tenth is left
// out so that a few calls that waited out an etcd leader election do not
// stretch every deadline after it: a call sent to a member that hangs
// right after must still give up in seconds, not tens of seconds.
func (l *requestLimit) timeout(floor time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(l.samples, len(l.recent))
	if n == 0 {
		return floor
	}
	sorted := slices.Clone(l.recent[:n])
	slices.Sort(sorted)
	p90 := sorted[(9*n+9)/10-1]
	return min(max(floor, 4*p90), MaxCallTimeout)
}

// MaxCallTimeout caps a derived deadline, and CallTimeout: a call this
// slow is stuck.
const MaxCallTimeout = 2 * time.Minute
