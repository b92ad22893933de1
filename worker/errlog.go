package worker

import (
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/patrol-dev/patrol/internal/metrics"
)

// errLog logs the failures of one etcd operation of the claim and commit
// path once per kind of error, and again at most once a minute while they
// go on, with how many there were; and once when the operation works
// again. An etcd that refuses every write (out of space) or is down makes
// one line a minute, not one per attempt.
type errLog struct {
	log  zerolog.Logger
	what string // "claim", "listing", "commit"

	mu      sync.Mutex
	kind    string    // the kind of error last logged; "" while working
	logged  time.Time // when it was last logged
	since   time.Time // when the failures began
	failed  int       // failures since
	skipped int       // of them, not logged
}

// errLogEvery is how often failures of one kind are logged while they go
// on.
const errLogEvery = time.Minute

// fail records a failure, logging it when its kind changed or a minute
// has passed.
func (e *errLog) fail(err error, fields func(*zerolog.Event) *zerolog.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.failed == 0 {
		e.since = now
	}
	e.failed++
	kind := metrics.ErrorKind(err)
	if kind == e.kind && now.Sub(e.logged) < errLogEvery {
		e.skipped++
		return
	}
	ev := e.log.Warn().Err(err).Str("op", e.what).Str("kind", kind).Int("failures", e.failed).Dur("failing_for", now.Sub(e.since))
	if e.skipped > 0 {
		ev = ev.Int("not_logged", e.skipped)
	}
	if fields != nil {
		ev = fields(ev)
	}
	ev.Msg(e.what + " failed")
	e.kind, e.logged, e.skipped = kind, now, 0
}

// ok records a success, logging the recovery after failures.
func (e *errLog) ok() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed == 0 {
		return
	}
	if e.kind != "" {
		e.log.Info().Str("op", e.what).Int("failures", e.failed).Dur("failed_for", time.Since(e.since)).Msg(e.what + " works again")
	}
	e.kind, e.failed, e.skipped = "", 0, 0
}
