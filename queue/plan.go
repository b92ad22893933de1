package queue

import (
	"encoding/json"
	"sort"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// etcd's limits a plan is measured against (its defaults).
const (
	EtcdMaxRequestBytes = 3 << 19 // 1.5 MiB
	EtcdMaxTxnOps       = 128
	EtcdQuotaBytes      = 2 << 30 // 2 GiB
)

// Plan is what submitting a batch would write, computed without etcd.
type Plan struct {
	Hosts           int            `json:"hosts"`
	Zones           map[string]int `json:"zones"`               // hosts per zone
	ShardsPerZone   int            `json:"shards_per_zone"`     // ready queues in each zone
	HostsPerShard   map[string]int `json:"max_hosts_per_shard"` // per zone, the fullest shard
	InventoryChunks int            `json:"inventory_chunks"`    // puts of the inventory, each one request
	LargestChunk    int            `json:"largest_chunk_bytes"`
	InventoryBytes  int            `json:"inventory_bytes"`
	ShardTxns       int            `json:"shard_txns"`   // leader transactions that write the ready keys
	ShardLanes      int            `json:"shard_lanes"`  // how many of them run at once
	TaskBytes       int            `json:"task_bytes"`   // ready values written, in all
	KeyWrites       int            `json:"key_writes"`   // puts and deletes for the whole batch, about 3.2 a task
	StoredBytes     int            `json:"stored_bytes"` // what the batch keeps in etcd until retention: inventory and results
	PeakBytes       int            `json:"peak_bytes"`   // what it needs at most while it runs: stored, plus its tasks' ready and running records
	Limits          PlanLimits     `json:"limits"`
}

// PlanLimits are the etcd limits the plan is measured against.
type PlanLimits struct {
	MaxRequestBytes int `json:"max_request_bytes"`
	MaxTxnOps       int `json:"max_txn_ops"`
	QuotaBytes      int `json:"quota_bytes"`
}

// resultBytes estimates one stored result.
const resultBytes = 300

// PlanBatch computes what submitting hosts would write.
func PlanBatch(hosts []inventory.Host, shards int) Plan {
	if shards <= 0 {
		shards = ShardsFor(len(hosts))
	}
	p := Plan{Hosts: len(hosts), Zones: map[string]int{}, ShardsPerZone: shards, HostsPerShard: map[string]int{},
		Limits: PlanLimits{MaxRequestBytes: EtcdMaxRequestBytes, MaxTxnOps: EtcdMaxTxnOps, QuotaBytes: EtcdQuotaBytes}}
	perShard := map[string]map[int]int{}
	for _, h := range hosts {
		z := ZoneOf(h)
		p.Zones[z]++
		if perShard[z] == nil {
			perShard[z] = map[int]int{}
		}
		perShard[z][ShardOf(h.Name, shards)]++
		t := Task{ID: TaskID(h.Name), Zone: z, Host: h, Attempt: 1}
		b, _ := json.Marshal(t)
		p.TaskBytes += len(b)
	}
	for z, m := range perShard {
		counts := make([]int, 0, len(m))
		for _, n := range m {
			counts = append(counts, n)
		}
		sort.Ints(counts)
		p.HostsPerShard[z] = counts[len(counts)-1]
	}
	for _, c := range chunkHosts(hosts, chunkBytes) {
		p.InventoryChunks++
		p.InventoryBytes += len(c)
		p.LargestChunk = max(p.LargestChunk, len(c))
	}
	p.ShardLanes = lanes(len(hosts))
	for l := range p.ShardLanes {
		from, to := laneRange(len(hosts), l, p.ShardLanes)
		p.ShardTxns += (to - from + shardChunk - 1) / shardChunk
	}
	p.KeyWrites = p.InventoryChunks + 2 + p.ShardTxns*2 + len(hosts)*32/10
	p.StoredBytes = p.InventoryBytes + len(hosts)*resultBytes
	p.PeakBytes = p.StoredBytes + 2*p.TaskBytes
	return p
}
