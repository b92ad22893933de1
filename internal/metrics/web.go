package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Web holds the metrics of `patrol web`: its requests, and the live
// progress it streams.
type Web struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// SSEClients is how many live-progress streams are open.
	SSEClients prometheus.Gauge
	// Followers is how many batches the server follows (one list and
	// watch of the batch's results each, shared by every client).
	Followers prometheus.Gauge
}

// webBuckets are request latencies, in seconds: a page is a few etcd
// reads; a submit of a large inventory takes seconds.
var webBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewWeb returns the web role's metrics, registered on reg. routes are
// the router's route names (the values of the route label, a closed set),
// each given a series from the start.
func NewWeb(reg prometheus.Registerer, routes []string) *Web {
	const sub = "web"
	m := &Web{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: sub, Name: "requests_total",
			Help: "HTTP requests answered, by route (the router's pattern, not the path) and status code."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: sub, Name: "request_duration_seconds",
			Help: "Time to answer an HTTP request, by route; a live-progress stream counts until its first event.", Buckets: webBuckets}, []string{"route"}),
		SSEClients: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: sub, Name: "sse_clients",
			Help: "Live-progress streams (Server-Sent Events) open."}),
		Followers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: sub, Name: "followed_batches",
			Help: "Batches whose results the server follows (one shared list and watch each, whatever the number of clients)."}),
	}
	for _, r := range routes {
		m.duration.WithLabelValues(r)
	}
	register(reg, m.requests, m.duration, m.SSEClients, m.Followers)
	return m
}

// Request records one answered request.
func (m *Web) Request(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
