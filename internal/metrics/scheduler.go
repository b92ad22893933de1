package metrics

import "github.com/prometheus/client_golang/prometheus"

// Scheduler holds a scheduler's metrics: leadership, and the leases and
// claims it watches over as leader.
type Scheduler struct {
	// Leader is 1 while this scheduler leads.
	Leader prometheus.Gauge
	// LeaderChanges counts the times this scheduler became leader.
	LeaderChanges prometheus.Counter
	// CampaignDuration is from starting a campaign to winning it.
	CampaignDuration prometheus.Histogram
	// LeaseExpirations counts worker leases that ended without a clean stop.
	LeaseExpirations prometheus.Counter
	// ClaimsRevoked counts claims revoked because their attempt overran.
	ClaimsRevoked prometheus.Counter
	// TasksRequeued counts tasks requeued from lost or revoked claims.
	TasksRequeued prometheus.Counter
	// RequeueDelay is from seeing a claim gone to its tasks requeued.
	RequeueDelay prometheus.Histogram
	// BatchesFinished counts batches this scheduler finished.
	BatchesFinished prometheus.Counter
	// Schedules are the schedule duty's metrics.
	Schedules *Schedules

	deadLetters *prometheus.CounterVec
}

// Reasons the scheduler ends a task dead, the values of the reason label.
const (
	DeadOutOfAttempts = "out_of_attempts" // its claim was lost on its last attempt
	DeadLost          = "lost"            // it was in no queue and had no result: its record was malformed and quarantined, or deleted
)

// NewScheduler returns a scheduler's metrics, registered on reg.
func NewScheduler(reg prometheus.Registerer) *Scheduler {
	const sub = "scheduler"
	m := &Scheduler{
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: sub, Name: "leader",
			Help: "1 while this scheduler is the elected leader, else 0."}),
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "leader_changes_total",
			Help: "Times this scheduler became leader; summed over schedulers, the leader changes."}),
		CampaignDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: sub, Name: "campaign_duration_seconds",
			Help: "Time from starting an election campaign to winning it; for a standby, the whole time it stood by.", Buckets: slowBuckets}),
		LeaseExpirations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "lease_expirations_total",
			Help: "Worker leases that expired: the worker stopped without revoking its lease (crash, kill -9, pause, partition)."}),
		ClaimsRevoked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "claims_revoked_total",
			Help: "Claims revoked because their attempt ran past its timeout plus the grace period."}),
		TasksRequeued: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "tasks_requeued_total",
			Help: "Tasks put back in their queue after their claim was lost or revoked."}),
		RequeueDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: sub, Name: "requeue_delay_seconds",
			Help: "Time from the leader seeing a claim gone (watch event or sweep) to its tasks requeued.", Buckets: slowBuckets}),
		BatchesFinished: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "batches_finished_total",
			Help: "Batches this scheduler finished."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "dead_letters_total",
			Help: "Tasks the scheduler ended dead, by reason."}, []string{"reason"}),
	}
	for _, r := range []string{DeadOutOfAttempts, DeadLost} {
		m.deadLetters.WithLabelValues(r) // every series exists from the start, for increase()
	}
	m.Schedules = newSchedules(reg)
	register(reg, m.Leader, m.LeaderChanges, m.CampaignDuration, m.LeaseExpirations, m.ClaimsRevoked,
		m.TasksRequeued, m.RequeueDelay, m.BatchesFinished, m.deadLetters)
	return m
}

// DeadLetters counts n tasks ended dead for reason.
func (m *Scheduler) DeadLetters(reason string, n int) {
	if n > 0 {
		m.deadLetters.WithLabelValues(reason).Add(float64(n))
	}
}
