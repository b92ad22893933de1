package metrics

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/patrol-dev/patrol/internal/check"
	"github.com/patrol-dev/patrol/queue"
)

const namespace = "patrol"

// NewRegistry returns a registry holding the Go and process collectors and
// patrol_build_info for role ("dev", "scheduler" or "worker").
func NewRegistry(role, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "Always 1; labels name the running version, Go version and role.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "role": role},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg
}

// register registers cs on reg, unless reg is nil.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) {
	if reg == nil {
		return
	}
	reg.MustRegister(cs...)
}

// Latency buckets, in seconds: etcd transactions take milliseconds; checks
// and requeues take up to minutes.
var (
	etcdBuckets  = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	checkBuckets = []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
	slowBuckets  = []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
)

// Etcd observes the queue's etcd transactions. It implements
// queue.Observer.
type Etcd struct {
	txn      *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	restarts *prometheus.CounterVec
	alarms   *prometheus.GaugeVec
	// endpoints and answering are the etcd endpoints configured and
	// those that answer (internal/failover).
	endpoints, answering prometheus.Gauge
}

// Alarms are the values of the alarm label: etcd's alarms, lower case.
var Alarms = []string{"nospace", "corrupt"}

// Watches are the values of the watch label: every watch Patrol keeps,
// named by the kind of key it follows.
var Watches = []string{"active", "cancels", "delayed", "workers", "assign", "results", "claims", "wake", "other"}

// Error kinds, the values of the kind label.
var errorKinds = []string{"timeout", "canceled", "unavailable", "no_leader", "not_found", "too_large", "no_space", "other"}

// NewEtcd returns the etcd metrics, registered on reg.
func NewEtcd(reg prometheus.Registerer) *Etcd {
	e := &Etcd{
		txn: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "etcd", Name: "txn_duration_seconds",
			Help:    "Latency of Patrol's etcd transactions (and of the ready listing and registration), by the Patrol operation they belong to.",
			Buckets: etcdBuckets,
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "etcd", Name: "errors_total",
			Help: "Patrol's etcd transactions that failed (not those a compare rejected), by operation and kind of error.",
		}, []string{"op", "kind"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "watch_restarts_total",
			Help: "Watches that ended and were listed and started again, by watch and reason (compacted, no_leader, closed, error, list_failed).",
		}, []string{"watch", "reason"}),
	}
	e.alarms = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "etcd", Name: "alarm",
		Help: "1 while etcd has raised the alarm (nospace: it takes reads and deletes only; corrupt), as this process last read it.",
	}, []string{"alarm"})
	for _, a := range Alarms {
		e.alarms.WithLabelValues(a)
	}
	e.endpoints = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "etcd", Name: "endpoints",
		Help: "The etcd endpoints this process was given (--endpoints).",
	})
	e.answering = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "etcd", Name: "endpoints_answering",
		Help: "The etcd endpoints that answer this process's probes; requests go only to these (to all of them when none answers).",
	})
	for _, w := range Watches {
		for _, r := range queue.WatchReasons {
			e.restarts.WithLabelValues(w, r)
		}
	}
	register(reg, e.txn, e.errors, e.restarts, e.alarms, e.endpoints, e.answering)
	return e
}

// SetAlarms records the alarms etcd has raised (etcd's names, such as
// "NOSPACE"); the others are cleared.
func (e *Etcd) SetAlarms(raised []string) {
	for _, a := range Alarms {
		v := 0.0
		for _, r := range raised {
			if strings.EqualFold(r, a) {
				v = 1
			}
		}
		e.alarms.WithLabelValues(a).Set(v)
	}
}

// SetEndpoints records how many etcd endpoints answer of those
// configured.
func (e *Etcd) SetEndpoints(answering, configured int) {
	e.endpoints.Set(float64(configured))
	e.answering.Set(float64(answering))
}

// WatchRestarted counts one watch restart. It implements
// queue.WatchObserver.
func (e *Etcd) WatchRestarted(watch, reason string) {
	if !slices.Contains(Watches, watch) {
		watch = "other"
	}
	e.restarts.WithLabelValues(watch, reason).Inc()
}

// ObserveTxn records one transaction.
func (e *Etcd) ObserveTxn(op string, took time.Duration, err error) {
	e.txn.WithLabelValues(op).Observe(took.Seconds())
	if err != nil {
		e.errors.WithLabelValues(op, ErrorKind(err)).Inc()
	}
}

// ErrorKind sorts an etcd client error into one of a few kinds.
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrGRPCNoLeader):
		return "no_leader"
	case errors.Is(err, rpctypes.ErrNoSpace), errors.Is(err, rpctypes.ErrGRPCNoSpace):
		return "no_space"
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrGRPCTooManyOps),
		errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrGRPCRequestTooLarge):
		return "too_large"
	case errors.Is(err, rpctypes.ErrLeaseNotFound), errors.Is(err, rpctypes.ErrGRPCLeaseNotFound):
		return "not_found"
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.DeadlineExceeded:
			return "timeout"
		case codes.Canceled:
			return "canceled"
		case codes.Unavailable:
			return "unavailable"
		case codes.NotFound:
			return "not_found"
		}
	}
	return "other"
}

// checkLabel is a check type as a label value: a known type, or "other",
// so that a typo in a batch cannot add a series.
func checkLabel(typ string) string {
	if _, ok := checkTypes[typ]; ok {
		return typ
	}
	return "other"
}

// checkTypes holds the known check types, looked up for every task.
var checkTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range check.Types() {
		m[t] = true
	}
	return m
}()
