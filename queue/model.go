package queue

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

var (
	// ErrBadKey is a key under the prefix that does not parse.
	ErrBadKey = errors.New("queue: malformed key")
	// ErrBadValue is a value in etcd that does not decode.
	ErrBadValue = errors.New("queue: malformed value")
	// ErrBatchExists is a submit reusing a batch ID with other content.
	ErrBatchExists = errors.New("queue: batch ID already used with different content")
	// ErrBatchNotFound is a batch ID with no spec in etcd.
	ErrBatchNotFound = errors.New("queue: batch not found")
	// ErrNotLeader is a scheduler write rejected by its fence: the writer
	// is no longer the elected leader.
	ErrNotLeader = errors.New("queue: fenced write rejected: not the leader")
	// ErrBadBatchID is a batch ID Patrol cannot use as a key part.
	ErrBadBatchID = errors.New("queue: invalid batch ID")
)

// Status is where a task stands. The final ones come from results.
type Status string

// Task statuses. StatusOK, StatusFail and StatusError are final and come
// from a committed Result; pending and running are derived from the ready
// and claim keys.
const (
	StatusPending Status = "pending"
	StatusRunning Status = "running"
	StatusOK      Status = "ok"
	StatusFail    Status = "fail"
	StatusError   Status = "error"
)

// DefaultShards is how many ready queues a batch is spread over.
const DefaultShards = 16

// BatchSpec is what an operator submitted. Stored at Keys.BatchSpec.
type BatchSpec struct {
	ID        string            `json:"id"`
	Check     string            `json:"check"`
	Params    map[string]string `json:"params,omitempty"`
	Hosts     int               `json:"hosts"`
	Shards    int               `json:"shards"`
	Nonce     string            `json:"nonce"`  // which chunk set holds the inventory
	Chunks    int               `json:"chunks"` // how many inventory chunks
	Digest    string            `json:"digest"` // of check, params and hosts: idempotent resubmits
	CreatedAt time.Time         `json:"created_at"`
}

// Task is one host of one batch. Its durable copy lives at Keys.Task and a
// claimable copy, carrying the attempt it will run as, at Keys.ReadyTask.
type Task struct {
	Batch   string         `json:"batch"`
	ID      string         `json:"id"`
	Shard   int            `json:"shard"`
	Host    inventory.Host `json:"host"`
	Attempt int            `json:"attempt,omitempty"` // 1 for the first run
}

// Claim records who runs a task. Stored at Keys.Claim with the worker's lease.
type Claim struct {
	Worker    string    `json:"worker"`
	Host      string    `json:"host"`
	Attempt   int       `json:"attempt"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// Result is a task's outcome, committed once. Stored at Keys.Result.
type Result struct {
	Host       string    `json:"host"`
	Status     Status    `json:"status"`
	Attempts   int       `json:"attempts"`
	Message    string    `json:"message"`
	DurationMS int64     `json:"duration_ms"`
	Worker     string    `json:"worker"`
	FinishedAt time.Time `json:"finished_at"`
}

// Summary is a finished batch's tally, written once at Keys.BatchSummary.
type Summary struct {
	Total      int            `json:"total"`
	Counts     map[Status]int `json:"counts"`
	FinishedAt time.Time      `json:"finished_at"`
}

// Failed reports whether any host did not pass.
func (s Summary) Failed() bool { return s.Counts[StatusOK] != s.Total }

// LeaderInfo is the value a scheduler campaigns with.
type LeaderInfo struct {
	ID    string    `json:"id"`
	Since time.Time `json:"since"`
}

var batchIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateBatchID reports whether id can name a batch.
func ValidateBatchID(id string) error {
	if !batchIDRe.MatchString(id) {
		return fmt.Errorf("%w %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadBatchID, id)
	}
	return nil
}

// ShardOf maps a host to one of n shards; the same host always lands in the
// same shard.
func ShardOf(host string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(host))
	return int(h.Sum32() % uint32(n))
}

// digest fingerprints a batch's content so that resubmitting the same batch
// ID is recognised as the same batch.
func digest(check string, params map[string]string, hosts []inventory.Host) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	enc := json.NewEncoder(h)
	enc.Encode(check)
	for _, k := range keys {
		enc.Encode([2]string{k, params[k]})
	}
	for _, host := range hosts {
		enc.Encode(host) // map keys are sorted by encoding/json
	}
	return hex.EncodeToString(h.Sum(nil))
}

// decode unmarshals an etcd value, wrapping failures in ErrBadValue with the key.
func decode(key string, val []byte, v any) error {
	if err := json.Unmarshal(val, v); err != nil {
		return fmt.Errorf("%w at %s: %v", ErrBadValue, key, err)
	}
	return nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("queue: marshal %T: %v", v, err)) // only plain structs are marshalled
	}
	return string(b)
}
