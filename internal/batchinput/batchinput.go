// Package batchinput checks what an operator gives a batch: its check,
// the check's params, the policy and the hosts. `patrol submit`, `patrol
// schedule create|update` and the web API read their flags or fields into
// a Change and Apply it, so a batch is judged the same from a terminal
// and a browser; each front end only words its own errors (flag or field
// names) and reads its own inventory (a file, or text in a request).
package batchinput

import (
	"errors"
	"time"

	"github.com/patrol-dev/patrol/internal/check"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
)

// ErrNoCheck is a check type given empty, or not given where one is
// needed. Front ends word it with their flag or field name.
var ErrNoCheck = errors.New("batchinput: no check type")

// Input is what each run of a batch is.
type Input struct {
	Check  string
	Params map[string]string
	Policy queue.Policy
	// Priority is the batch's share of the workers (queue.ParsePriority).
	Priority int
	// Hosts are nil when none were given: an update that keeps the
	// stored inventory.
	Hosts []inventory.Host
}

// Defaults is what a new batch starts from: no check, no params, the
// default policy.
func Defaults() Input {
	return Input{Params: map[string]string{}, Policy: queue.Policy{MaxAttempts: queue.DefaultMaxAttempts,
		TimeoutMS: queue.DefaultTimeout.Milliseconds(), BackoffMS: queue.DefaultBackoff.Milliseconds(), MaxBackoffMS: queue.DefaultMaxBackoff.Milliseconds()}}
}

// Change is what an operator gave; a nil field was not given and keeps
// the base's value.
type Change struct {
	Check                        *string
	Params                       map[string]string
	Timeout, Backoff, MaxBackoff *time.Duration
	MaxAttempts                  *int
	RetryFailures                *bool
	MaxFailures                  *string
	Parallel                     *int
	Priority                     *int
	Hosts                        []inventory.Host
}

// Invalid is input the operator must fix: the message says how.
type Invalid struct{ Err error }

func (e *Invalid) Error() string { return e.Err.Error() }
func (e *Invalid) Unwrap() error { return e.Err }

// Apply applies ch over base and checks the result: the policy, and the
// check's params and timeout against the hosts (ch's, else, when the
// check or params change, those stored returns, if stored is not nil).
// Errors the operator must fix are *Invalid; an error of stored is
// returned as it is. Nothing is written anywhere.
func Apply(base Input, ch Change, stored func() ([]inventory.Host, error)) (Input, error) {
	in := base
	if ch.Check != nil {
		if *ch.Check == "" {
			return in, &Invalid{ErrNoCheck}
		}
		in.Check = *ch.Check
	}
	if ch.Params != nil {
		in.Params = ch.Params
	}
	p := &in.Policy
	set := func(d *time.Duration, ms *int64) {
		if d != nil {
			*ms = d.Milliseconds()
		}
	}
	set(ch.Timeout, &p.TimeoutMS)
	set(ch.Backoff, &p.BackoffMS)
	set(ch.MaxBackoff, &p.MaxBackoffMS)
	if ch.MaxAttempts != nil {
		p.MaxAttempts = *ch.MaxAttempts
	}
	if ch.RetryFailures != nil {
		p.RetryFailures = *ch.RetryFailures
	}
	if ch.MaxFailures != nil {
		p.MaxFailures = *ch.MaxFailures
	}
	if ch.Parallel != nil {
		p.Parallel = *ch.Parallel
	}
	if err := p.Validate(); err != nil {
		return in, &Invalid{err}
	}
	if ch.Priority != nil {
		if err := queue.ValidatePriority(*ch.Priority); err != nil {
			return in, &Invalid{err}
		}
		in.Priority = *ch.Priority
	}
	hosts := base.Hosts
	if ch.Hosts != nil {
		hosts, in.Hosts = ch.Hosts, ch.Hosts
	} else if stored != nil && (ch.Check != nil || ch.Params != nil) {
		var err error
		if hosts, err = stored(); err != nil {
			return in, err
		}
	}
	if hosts != nil {
		if err := check.Validate(in.Check, in.Params, hosts); err != nil {
			return in, &Invalid{err}
		}
	}
	if err := check.ValidateTimeout(in.Check, in.Params, p.Timeout()); err != nil {
		return in, &Invalid{err}
	}
	return in, nil
}
