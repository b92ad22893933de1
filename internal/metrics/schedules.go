package metrics

import "github.com/prometheus/client_golang/prometheus"

// Schedules holds the metrics of the leader's schedule duty: what it did
// with schedules' ticks. No label names a schedule: `patrol schedule
// describe` has each one's runs, skips and misses.
type Schedules struct {
	ticks *prometheus.CounterVec
	// FireDelay is from a tick's due time (jitter included) to its
	// batch's creation.
	FireDelay prometheus.Histogram
	// Malformed counts schedule records quarantined because they did not
	// decode or their cadence did not parse.
	Malformed prometheus.Counter
}

// Tick outcomes, the values of patrol_schedule_ticks_total's outcome label.
var TickOutcomes = []string{"fired", "triggered", "skipped", "buffered", "missed"}

func newSchedules(reg prometheus.Registerer) *Schedules {
	const sub = "schedule"
	m := &Schedules{
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "ticks_total",
			Help: "Schedule ticks the leader dealt with, by outcome: fired, triggered (patrol schedule trigger), skipped (overlap), buffered (overlap buffer-one), missed (catch-up)."},
			[]string{"outcome"}),
		FireDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: sub, Name: "fire_delay_seconds",
			Help: "Time from a schedule tick's due time (jitter included) to its batch's creation.", Buckets: slowBuckets}),
		Malformed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "malformed_total",
			Help: "Schedule records the leader quarantined because they did not decode or their cadence did not parse."}),
	}
	for _, o := range TickOutcomes {
		m.ticks.WithLabelValues(o) // every series exists from the start, for increase()
	}
	register(reg, m.ticks, m.FireDelay, m.Malformed)
	return m
}

// Ticks counts n ticks with outcome.
func (m *Schedules) Ticks(outcome string, n int) {
	if n > 0 {
		m.ticks.WithLabelValues(outcome).Add(float64(n))
	}
}

// Tick is the counter of ticks with outcome.
func (m *Schedules) Tick(outcome string) prometheus.Counter { return m.ticks.WithLabelValues(outcome) }
