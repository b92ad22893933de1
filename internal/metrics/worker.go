package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patrol-dev/patrol/internal/check"
)

// Worker holds a worker's metrics: claims, commits and checks.
type Worker struct {
	// ClaimDuration is a claim transaction's latency.
	ClaimDuration prometheus.Histogram
	// TasksClaimed counts tasks claimed.
	TasksClaimed prometheus.Counter
	// ZombiesRejected counts completions refused by the claim fence.
	ZombiesRejected prometheus.Counter
	// TasksGivenBack counts claimed tasks that waited too long for a slot
	// and were given back.
	TasksGivenBack prometheus.Counter
	// CommitRetries counts commits tried again after one failed.
	CommitRetries prometheus.Counter
	// GroupsReleased counts groups given back unfinished.
	GroupsReleased prometheus.Counter
	// KeepaliveFailures counts sessions whose lease was lost under the worker.
	KeepaliveFailures prometheus.Counter
	// RunningChecks is how many checks run now.
	RunningChecks prometheus.Gauge
	// Capacity is the worker's --concurrency.
	Capacity prometheus.Gauge
	// RequestLimit is the adaptive limit on claim (and on commit)
	// transactions in flight.
	RequestLimit prometheus.Gauge

	claims        *prometheus.CounterVec
	committed     *prometheus.CounterVec
	retries       *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	checkDuration *prometheus.HistogramVec
}

// Claim outcomes, the values of the outcome label.
const (
	ClaimWon      = "won"      // took at least one task
	ClaimConflict = "conflict" // other workers took every task first
	ClaimError    = "error"    // the transaction failed
)

// NewWorker returns a worker's metrics, registered on reg.
func NewWorker(reg prometheus.Registerer) *Worker {
	const sub = "worker"
	m := &Worker{
		ClaimDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: sub, Name: "claim_duration_seconds",
			Help: "Latency of a claim: from its transaction's start to its answer, conflicts retried included.", Buckets: etcdBuckets}),
		TasksClaimed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "tasks_claimed_total",
			Help: "Tasks claimed."}),
		ZombiesRejected: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "zombie_completions_rejected_total",
			Help: "Completions refused because the claim was no longer this worker's (lease expired or claim revoked); the committed result is untouched."}),
		TasksGivenBack: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "tasks_given_back_total",
			Help: "Claimed tasks that waited longer than their batch allows for a slot (a quarter of the timeout, at most 15s) and were given back, due at once on the same attempt."}),
		CommitRetries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "commit_retries_total",
			Help: "Commits tried again after one failed or had an unknown outcome (what landed is re-read first)."}),
		GroupsReleased: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "groups_released_total",
			Help: "Claimed groups given back unfinished (drain, shutdown), requeued at once."}),
		KeepaliveFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "keepalive_failures_total",
			Help: "Sessions whose lease could not be kept alive: it expired or was revoked under the worker."}),
		RunningChecks: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: sub, Name: "running_checks",
			Help: "Checks running now."}),
		Capacity: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: sub, Name: "capacity",
			Help: "How many checks the worker may run at once (--concurrency)."}),
		RequestLimit: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: sub, Name: "etcd_request_limit",
			Help: "The adaptive limit on claim transactions in flight, and apart from them on commit transactions: lowered while etcd's latency is well above the worker's own baseline."}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "claim_transactions_total",
			Help: "Claims by outcome: won (took tasks), conflict (others took them all first), error."}, []string{"outcome"}),
		committed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "results_committed_total",
			Help: "Results committed, by status and check type."}, []string{"status", "check"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "retries_total",
			Help: "Attempts that ended in an error (or a failure, with --retry-failures) and were scheduled again."}, []string{"check"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "dead_letters_total",
			Help: "Tasks that ran out of attempts and ended dead."}, []string{"check"}),
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: sub, Name: "check_duration_seconds",
			Help: "How long checks took, by check type and status.", Buckets: checkBuckets}, []string{"check", "status"}),
	}
	for _, o := range []string{ClaimWon, ClaimConflict, ClaimError} {
		m.claims.WithLabelValues(o)
	}
	for _, c := range check.Types() {
		m.retries.WithLabelValues(c)
		m.deadLetters.WithLabelValues(c)
	}
	register(reg, m.ClaimDuration, m.TasksClaimed, m.ZombiesRejected, m.TasksGivenBack, m.CommitRetries, m.GroupsReleased, m.KeepaliveFailures,
		m.RunningChecks, m.Capacity, m.RequestLimit, m.claims, m.committed, m.retries, m.deadLetters, m.checkDuration)
	return m
}

// Claimed records a claim transaction's outcome.
func (m *Worker) Claimed(outcome string) { m.claims.WithLabelValues(outcome).Inc() }

// Committed records a committed result.
func (m *Worker) Committed(status, checkType string) {
	m.committed.WithLabelValues(status, checkLabel(checkType)).Inc()
}

// Retried records an attempt scheduled again.
func (m *Worker) Retried(checkType string) { m.retries.WithLabelValues(checkLabel(checkType)).Inc() }

// Dead records a task out of attempts.
func (m *Worker) Dead(checkType string) { m.deadLetters.WithLabelValues(checkLabel(checkType)).Inc() }

// CheckDone records a check's duration and status.
func (m *Worker) CheckDone(checkType, status string, took time.Duration) {
	m.checkDuration.WithLabelValues(checkLabel(checkType), status).Observe(took.Seconds())
}
