package check

import (
	"context"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// noopCheck touches no host: it waits, then passes or fails as asked. It is
// for trying out the queue and for tests.
//
// Params:
//
//	sleep  duration to wait before answering; default 0
//	fail   true to report fail instead of ok; default false
//	warn   true to report warn instead of ok; default false
type noopCheck struct {
	sleep time.Duration
	fail  bool
	warn  bool
}

func newNoop(p params, _ Options) (Check, error) {
	sleep, err := p.duration("sleep", 0, true)
	if err != nil {
		return nil, err
	}
	fail, err := p.bool("fail")
	if err != nil {
		return nil, err
	}
	warn, err := p.bool("warn")
	if err != nil {
		return nil, err
	}
	if fail && warn {
		return nil, p.bad("warn", "one verdict: pass fail=true or warn=true, not both")
	}
	return &noopCheck{sleep: sleep, fail: fail, warn: warn}, nil
}

func (c *noopCheck) Run(ctx context.Context, _ inventory.Host) (res Result) {
	start := time.Now()
	defer recoverResult(&res, start)

	if ctx.Err() != nil {
		return result(start, StatusError, "noop: cancelled")
	}
	if c.sleep > 0 {
		t := time.NewTimer(c.sleep)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return result(start, StatusError, "noop: cancelled")
		case <-t.C:
		}
	}
	if c.fail {
		return result(start, StatusFail, "noop: asked to fail")
	}
	if c.warn {
		return result(start, StatusWarn, "noop: asked to warn")
	}
	return result(start, StatusOK, "noop: ok after %s", c.sleep)
}
