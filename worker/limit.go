package worker

import (
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// adaptiveLimit is how many checks a worker lets run at once. It follows
// the latency of the worker's claim transactions: when their p95 over the
// last window is above slow, etcd is struggling and the limit is cut by
// 30%; when it is under half of slow, the limit grows by a quarter again,
// never below a floor (a sixteenth of the ceiling) nor above the
// configured concurrency.
type adaptiveLimit struct {
	floor, ceiling int
	slow           time.Duration
	log            zerolog.Logger

	mu      sync.Mutex
	current int
	window  []time.Duration
}

// window is how many claim latencies one decision looks at.
const window = 20

func newAdaptiveLimit(ceiling int, slow time.Duration, log zerolog.Logger) *adaptiveLimit {
	return &adaptiveLimit{floor: max(1, ceiling/16), ceiling: ceiling, slow: slow, log: log, current: ceiling}
}

func (a *adaptiveLimit) get() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

// observe records one claim latency and adjusts the limit once a window
// is full.
func (a *adaptiveLimit) observe(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.window = append(a.window, d)
	if len(a.window) < window {
		return
	}
	sorted := slices.Clone(a.window)
	slices.Sort(sorted)
	p95 := sorted[len(sorted)*95/100]
	a.window = a.window[:0]
	old := a.current
	switch {
	case p95 > a.slow:
		a.current = max(a.floor, a.current*7/10)
	case p95 < a.slow/2:
		a.current = min(a.ceiling, a.current+max(1, a.current/4))
	}
	if a.current != old {
		a.log.Info().Int("from", old).Int("to", a.current).Dur("claim_p95", p95).Msg("claim limit changed")
	}
}
