package metrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patrol-dev/patrol/queue"
)

// MaxScheduleSeries bounds the schedule label: the collector exports the
// first MaxScheduleSeries schedules by name, and counts the others in
// patrol_schedule_unexported. Schedules are operator-made objects, a
// handful to some dozens; the bound keeps a runaway script from growing
// the series without end.
const MaxScheduleSeries = 100

// ScheduleCollector reads schedules from etcd when scraped, in the style
// of kube-state-metrics' CronJob metrics: per schedule, when its next run
// is due, when it last ran and last passed, how its last run's hosts
// ended, how many newly failed, whether it is paused, and its missed and
// skipped ticks. Every scheduler exports them, leader or not: aggregate
// with max.
type ScheduleCollector struct {
	q       *queue.Queue
	next    func(queue.ScheduleSpec, queue.ScheduleState) time.Time
	now     func() time.Time
	timeout time.Duration

	nextRun, lastRun, lastSuccess, lastHosts, newlyFailing, paused, missed, skipped, unexported *prometheus.Desc

	mu      sync.Mutex
	readAt  time.Time
	reading bool
	rows    []scheduleRow
	extra   int
	runs    map[string]lastRun // by schedule: its last run, read when its LastBatch changes
}

type scheduleRow struct {
	name    string
	next    time.Time
	paused  bool
	missed  int64
	skipped int64
	last    lastRun
}

// lastRun is what the collector knows of a schedule's newest runs.
type lastRun struct {
	batch        string // the schedule's LastBatch when read
	finished     bool   // its newest run had finished then
	at           time.Time
	success      time.Time
	counts       map[queue.Status]int
	newlyFailing int
}

// NewScheduleCollector returns a collector over q's schedules; next says
// when a schedule's next tick is due (nil: not exported).
func NewScheduleCollector(q *queue.Queue, next func(queue.ScheduleSpec, queue.ScheduleState) time.Time) *ScheduleCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "schedule", name), help, append([]string{"schedule"}, labels...), nil)
	}
	return &ScheduleCollector{
		q: q, next: next, now: time.Now, timeout: 4 * time.Second, runs: map[string]lastRun{},
		nextRun:      desc("next_run_timestamp_seconds", "When the schedule's next tick not yet dealt with is due (Unix time, jitter included); in the past, the tick is late."),
		lastRun:      desc("last_run_timestamp_seconds", "The tick (Unix time) of the schedule's newest run."),
		lastSuccess:  desc("last_success_timestamp_seconds", "When the schedule's newest run whose hosts all passed finished (Unix time), among the runs kept."),
		lastHosts:    desc("last_run_hosts", "Hosts of the schedule's newest finished run, by final status.", "status"),
		newlyFailing: desc("newly_failing_hosts", "Hosts failing in the schedule's newest finished run that passed in the run before."),
		paused:       desc("paused", "1 while the schedule is paused, else 0."),
		missed:       desc("missed_runs_total", "Ticks of the schedule missed: due while no scheduler fired them, and not run by the catch-up rule."),
		skipped:      desc("skipped_runs_total", "Ticks of the schedule skipped by its overlap policy."),
		unexported: prometheus.NewDesc(prometheus.BuildFQName(namespace, "schedule", "unexported"),
			"Schedules beyond the first "+strconv.Itoa(MaxScheduleSeries)+" by name, which have no per-schedule series.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ScheduleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.nextRun, c.lastRun, c.lastSuccess, c.lastHosts, c.newlyFailing, c.paused, c.missed, c.skipped, c.unexported} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ScheduleCollector) Collect(ch chan<- prometheus.Metric) {
	c.refresh()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	ts := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	for _, r := range c.rows {
		if !r.next.IsZero() {
			m(c.nextRun, prometheus.GaugeValue, ts(r.next), r.name)
		}
		if !r.last.at.IsZero() {
			m(c.lastRun, prometheus.GaugeValue, ts(r.last.at), r.name)
		}
		if !r.last.success.IsZero() {
			m(c.lastSuccess, prometheus.GaugeValue, ts(r.last.success), r.name)
		}
		if r.last.counts != nil {
			for _, st := range []queue.Status{queue.StatusOK, queue.StatusWarn, queue.StatusFail, queue.StatusError, queue.StatusDead, queue.StatusCancelled, queue.StatusSkipped} {
				m(c.lastHosts, prometheus.GaugeValue, float64(r.last.counts[st]), r.name, string(st))
			}
			m(c.newlyFailing, prometheus.GaugeValue, float64(r.last.newlyFailing), r.name)
		}
		m(c.paused, prometheus.GaugeValue, b2f(r.paused), r.name)
		m(c.missed, prometheus.CounterValue, float64(r.missed), r.name)
		m(c.skipped, prometheus.CounterValue, float64(r.skipped), r.name)
	}
	m(c.unexported, prometheus.GaugeValue, float64(c.extra))
}

// refresh reads the schedules unless the last reading is fresh enough; a
// schedule's runs are read again only when its last run changed or had
// not finished.
func (c *ScheduleCollector) refresh() {
	c.mu.Lock()
	if c.reading || (!c.readAt.IsZero() && c.now().Sub(c.readAt) < CacheFor) {
		c.mu.Unlock()
		return
	}
	c.reading = true
	known := make(map[string]lastRun, len(c.runs))
	for k, v := range c.runs {
		known[k] = v
	}
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	recs, _, err := c.q.Schedules(ctx)
	var rows []scheduleRow
	extra := 0
	runs := map[string]lastRun{}
	if err == nil {
		if len(recs) > MaxScheduleSeries {
			extra = len(recs) - MaxScheduleSeries
			recs = recs[:MaxScheduleSeries]
		}
		for _, rec := range recs {
			r := scheduleRow{name: rec.Spec.Name, paused: rec.Spec.Paused, missed: rec.State.Missed, skipped: rec.State.Skipped}
			if c.next != nil && !rec.Spec.Paused {
				r.next = c.next(rec.Spec, rec.State)
			}
			lr, ok := known[rec.Spec.Name]
			if !ok || lr.batch != rec.State.LastBatch || !lr.finished {
				if fresh, err := c.readRuns(ctx, rec); err == nil {
					lr = fresh
				}
			}
			r.last = lr
			runs[rec.Spec.Name] = lr
			rows = append(rows, r)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading = false
	c.readAt = c.now()
	if err != nil {
		return // keep the last reading
	}
	c.rows, c.extra, c.runs = rows, extra, runs
}

// readRuns reads a schedule's newest runs.
func (c *ScheduleCollector) readRuns(ctx context.Context, rec queue.ScheduleRecord) (lastRun, error) {
	lr := lastRun{batch: rec.State.LastBatch}
	list, err := c.q.ScheduleBatches(ctx, rec.Spec.Name, rec.Spec.History)
	if err != nil {
		return lr, err
	}
	if len(list) > 0 {
		lr.at = list[0].Spec.ScheduledFor
		lr.finished = list[0].Summary != nil
	}
	for _, b := range list {
		if b.Summary == nil {
			continue
		}
		if lr.counts == nil {
			lr.counts = b.Summary.Counts
			ch, err := c.q.Changes(ctx, b.Spec.ID)
			if err != nil {
				return lr, err
			}
			for _, x := range ch.Changes {
				if x.Change == queue.ChangeNewlyFailing {
					lr.newlyFailing++
				}
			}
		}
		if !b.Summary.Failed() {
			lr.success = b.Summary.FinishedAt
			break
		}
	}
	return lr, nil
}
