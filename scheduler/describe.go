package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/patrol-dev/patrol/queue"
)

// What `patrol schedule` and the web API share: the settings an operator
// gives a schedule, its list row and its description. Both read and check
// them here, so a schedule is judged the same from a terminal and a browser.

// Settings are a schedule's cadence and tick settings as an operator gives
// them (flags, API fields). A nil field leaves the spec's value as it is.
type Settings struct {
	Cron    *string
	Every   *time.Duration
	Overlap *string
	Catchup *time.Duration
	Jitter  *time.Duration
	History *int
}

// Apply sets the given settings on spec and checks the whole spec. Giving
// Cron or Every replaces the cadence (the other one is cleared). Every
// error is the operator's to fix, and says how.
func (s Settings) Apply(spec *queue.ScheduleSpec) error {
	if s.Cron != nil || s.Every != nil {
		var cron string
		var every time.Duration
		if s.Cron != nil {
			cron = *s.Cron
		}
		if s.Every != nil {
			every = *s.Every
		}
		if _, err := ParseCadence(cron, every); err != nil {
			return cadenceError{err}
		}
		spec.Cron, spec.EveryMS = cron, every.Milliseconds()
	}
	if s.Overlap != nil {
		o, err := queue.ParseOverlap(*s.Overlap)
		if err != nil {
			return err
		}
		spec.Overlap = o
	}
	if s.Catchup != nil {
		spec.CatchupMS = s.Catchup.Milliseconds()
	}
	if s.Jitter != nil {
		spec.JitterMS = s.Jitter.Milliseconds()
	}
	if s.History != nil {
		spec.History = *s.History
	}
	return spec.Validate()
}

// cadenceError is a cadence that does not parse: a queue.ErrBadSchedule
// worded as ParseCadence words it.
type cadenceError struct{ err error }

func (e cadenceError) Error() string        { return e.err.Error() }
func (e cadenceError) Is(target error) bool { return target == queue.ErrBadSchedule }

// ListItem is one schedule in a list.
type ListItem struct {
	Name    string `json:"name"`
	Cadence string `json:"cadence"`
	Check   string `json:"check"`
	Hosts   int    `json:"hosts"`
	Paused  bool   `json:"paused"`
	// NextRun is the next tick not dealt with (zero when paused); in the
	// past, it is overdue.
	NextRun  time.Time `json:"next_run,omitzero"`
	LastRun  string    `json:"last_run,omitempty"`
	LastTick time.Time `json:"last_tick,omitzero"`
}

// Item is rec's list row.
func Item(rec queue.ScheduleRecord) ListItem {
	var next time.Time
	if !rec.Spec.Paused {
		next = NextRun(rec.Spec, rec.State)
	}
	return ListItem{Name: rec.Spec.Name, Cadence: CadenceText(rec.Spec), Check: rec.Spec.Check, Hosts: rec.Spec.Hosts,
		Paused: rec.Spec.Paused, NextRun: next, LastRun: rec.State.LastBatch, LastTick: rec.State.LastTick}
}

// CadenceText is a schedule's cadence in words: "cron '0 6 * * *'" or
// "every 5m0s".
func CadenceText(s queue.ScheduleSpec) string {
	if s.Cron != "" {
		return "cron '" + s.Cron + "'"
	}
	return "every " + s.Every().String()
}

// Description is what `patrol schedule describe` shows.
type Description struct {
	Spec      queue.ScheduleSpec  `json:"spec"`
	State     queue.ScheduleState `json:"state"`
	Zone      string              `json:"zone"`
	DSTRule   string              `json:"dst_rule,omitempty"`
	NextTicks []Tick              `json:"next_runs"`
	LastRuns  []Run               `json:"last_runs"`
	Changes   *queue.RunChanges   `json:"last_run_changes,omitempty"`
	Trigger   time.Time           `json:"trigger_pending,omitzero"`
	// Cadence is the parsed cadence, for showing times in its zone.
	Cadence Cadence `json:"-"`
}

// Run is one of a schedule's latest runs.
type Run struct {
	Batch    string               `json:"batch_id"`
	Tick     time.Time            `json:"tick"`
	State    string               `json:"state"`
	Hosts    int                  `json:"hosts"`
	Counts   map[queue.Status]int `json:"counts,omitempty"`
	Duration time.Duration        `json:"duration_ns,omitempty"`
}

// Describe reads schedule name: its spec and state, its next n ticks
// after now, its last n runs and what changed in the latest. An unknown
// name is queue.ErrScheduleNotFound.
func Describe(ctx context.Context, q *queue.Queue, name string, now time.Time, n int) (Description, error) {
	rec, err := q.Schedule(ctx, name)
	if err != nil {
		return Description{}, err
	}
	cad, err := ParseCadence(rec.Spec.Cron, rec.Spec.Every())
	if err != nil {
		return Description{}, fmt.Errorf("schedule %s has a cadence that does not parse (%v); fix it with `patrol schedule update %s --cron ...`", name, err, name)
	}
	d := Description{Spec: rec.Spec, State: rec.State, Zone: cad.Location().String(), Trigger: rec.Trigger, LastRuns: []Run{}, Cadence: cad}
	if rec.Spec.Cron != "" {
		d.DSTRule = DSTRule
	}
	from := now
	if rec.State.LastTick.After(from) {
		from = rec.State.LastTick
	}
	d.NextTicks = cad.NextTicks(from, n)
	runs, err := q.ScheduleBatches(ctx, name, n)
	if err != nil {
		return Description{}, fmt.Errorf("read schedule %s's runs: %w", name, err)
	}
	for _, b := range runs {
		r := Run{Batch: b.Spec.ID, Tick: b.Spec.ScheduledFor, State: "running", Hosts: b.Spec.Hosts}
		if b.Summary != nil {
			r.State, r.Counts, r.Duration = "finished", b.Summary.Counts, b.Summary.FinishedAt.Sub(b.Spec.CreatedAt)
		}
		d.LastRuns = append(d.LastRuns, r)
	}
	if len(runs) > 0 {
		ch, err := q.Changes(ctx, runs[0].Spec.ID)
		if err != nil {
			return Description{}, fmt.Errorf("compare schedule %s's last runs: %w", name, err)
		}
		d.Changes = &ch
	}
	return d, nil
}
