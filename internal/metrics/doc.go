// Package metrics defines every Prometheus metric Patrol exports, the
// scrape-time collector that reads the queue's depth from etcd, and the
// HTTP listener that serves /metrics, /livez, /readyz and, when asked,
// /debug/pprof/.
//
// Nothing registers itself at import time: each constructor takes a
// prometheus.Registerer (nil: the metrics work but are not exported), so
// tests and `patrol dev` can run several roles in one process without
// clashing. docs/metrics.md is the reference; a test keeps it in step with
// what is registered here.
//
// No label's values grow with hosts, batches or tasks: zones, states,
// statuses, check types, operations and error kinds are all small, closed
// sets.
package metrics
