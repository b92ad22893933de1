// Package throughput holds Patrol's end-to-end throughput benchmark: raw
// etcd compare-and-put transactions against a whole batch run through the
// scheduler and workers, measured in one run on the same embedded etcd so
// that their ratio means something on a shared, noisy machine.
package throughput
