// Package shardbench holds Patrol's sharding benchmark: one real `patrol
// scheduler` process, on an embedded etcd with fsync on, turns a
// 100,000-host batch into ready tasks. It measures the time from submit to
// the last sharding lane complete and the scheduler's peak resident memory,
// the two figures that bound how large a batch one scheduler can take.
package shardbench
