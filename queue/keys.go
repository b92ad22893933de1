package queue

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Keys builds and parses every etcd key Patrol uses. It is the only place
// where key strings are put together: the schema below is the whole of
// Patrol's state.
//
//	<prefix>/election/<lease>                 scheduler election (concurrency.Election); value: LeaderInfo JSON
//	<prefix>/active/<batch>                   a batch the scheduler still has work for; value: batch ID
//	<prefix>/batches/<batch>/spec             BatchSpec JSON; written last by submit, so its presence commits the batch
//	<prefix>/batches/<batch>/hosts/<nonce>/<n> inventory chunk n of the submit attempt nonce; value: []inventory.Host JSON
//	<prefix>/batches/<batch>/progress         hosts sharded so far (decimal), written by the leader with each task chunk
//	<prefix>/batches/<batch>/summary          Summary JSON, written once when every task has a result
//	<prefix>/tasks/<batch>/<task>             durable Task JSON, written by the leader
//	<prefix>/ready/<shard>/<batch>/<task>     claimable Task JSON (with its attempt number); deleted by the claim
//	<prefix>/claims/<batch>/<task>            Claim JSON, bound to the claiming worker's lease
//	<prefix>/results/<batch>/<task>           Result JSON, committed once, fenced on the claim
//
// Batch IDs never contain "/"; task IDs are path-escaped host names.
type Keys struct {
	prefix string
}

// NewKeys returns the key builder for prefix (e.g. "/patrol"). A trailing
// slash is ignored.
func NewKeys(prefix string) Keys {
	return Keys{prefix: strings.TrimSuffix(prefix, "/")}
}

// Prefix is the root every key lives under, without a trailing slash.
func (k Keys) Prefix() string { return k.prefix }

// All is the prefix covering every Patrol key.
func (k Keys) All() string { return k.prefix + "/" }

// Election is the prefix concurrency.Election campaigns under.
func (k Keys) Election() string { return k.prefix + "/election" }

// Active is the prefix of the active-batch index.
func (k Keys) Active() string { return k.prefix + "/active/" }

// ActiveBatch marks batch as having work left for the scheduler.
func (k Keys) ActiveBatch(batch string) string { return k.Active() + batch }

// ParseActive returns the batch ID of an ActiveBatch key.
func (k Keys) ParseActive(key string) (string, error) {
	parts, err := k.split(key, k.Active(), 1)
	if err != nil {
		return "", err
	}
	return parts[0], nil
}

// Batches is the prefix of every batch's records.
func (k Keys) Batches() string { return k.prefix + "/batches/" }

// Batch is the prefix of one batch's records.
func (k Keys) Batch(batch string) string { return k.Batches() + batch + "/" }

// BatchSpec holds the batch's BatchSpec.
func (k Keys) BatchSpec(batch string) string { return k.Batch(batch) + "spec" }

// BatchHosts is the prefix of the inventory chunks written by one submit
// attempt (nonce): a submit that dies before writing the spec leaves chunks
// no spec points at, and a concurrent submit of the same ID cannot
// overwrite the winner's chunks.
func (k Keys) BatchHosts(batch, nonce string) string {
	return k.Batch(batch) + "hosts/" + nonce + "/"
}

// BatchHostChunk holds inventory chunk n of a submit attempt.
func (k Keys) BatchHostChunk(batch, nonce string, n int) string {
	return fmt.Sprintf("%s%06d", k.BatchHosts(batch, nonce), n)
}

// BatchProgress holds how many of the batch's hosts are sharded into tasks.
func (k Keys) BatchProgress(batch string) string { return k.Batch(batch) + "progress" }

// BatchSummary holds the batch's Summary once it has finished.
func (k Keys) BatchSummary(batch string) string { return k.Batch(batch) + "summary" }

// Tasks is the prefix of a batch's durable task records.
func (k Keys) Tasks(batch string) string { return k.prefix + "/tasks/" + batch + "/" }

// Task holds one task's durable record.
func (k Keys) Task(batch, task string) string { return k.Tasks(batch) + task }

// Ready is the prefix of every claimable task.
func (k Keys) Ready() string { return k.prefix + "/ready/" }

// ReadyShard is the prefix of one shard's claimable tasks.
func (k Keys) ReadyShard(shard int) string { return fmt.Sprintf("%s%03d/", k.Ready(), shard) }

// ReadyTask marks a task as claimable; its value is the Task to run.
func (k Keys) ReadyTask(shard int, batch, task string) string {
	return k.ReadyShard(shard) + batch + "/" + task
}

// ParseReady splits a ReadyTask key.
func (k Keys) ParseReady(key string) (shard int, batch, task string, err error) {
	parts, err := k.split(key, k.Ready(), 3)
	if err != nil {
		return 0, "", "", err
	}
	shard, err = strconv.Atoi(parts[0])
	if err != nil {
		return 0, "", "", fmt.Errorf("%w: %q: bad shard", ErrBadKey, key)
	}
	return shard, parts[1], parts[2], nil
}

// Claims is the prefix of every claim.
func (k Keys) Claims() string { return k.prefix + "/claims/" }

// BatchClaims is the prefix of one batch's claims.
func (k Keys) BatchClaims(batch string) string { return k.Claims() + batch + "/" }

// Claim holds the claim on a task, attached to the worker's lease.
func (k Keys) Claim(batch, task string) string { return k.BatchClaims(batch) + task }

// ParseClaim splits a Claim key.
func (k Keys) ParseClaim(key string) (batch, task string, err error) {
	parts, err := k.split(key, k.Claims(), 2)
	if err != nil {
		return "", "", err
	}
	return parts[0], parts[1], nil
}

// Results is the prefix of every result.
func (k Keys) Results() string { return k.prefix + "/results/" }

// BatchResults is the prefix of one batch's results.
func (k Keys) BatchResults(batch string) string { return k.Results() + batch + "/" }

// Result holds a task's committed Result.
func (k Keys) Result(batch, task string) string { return k.BatchResults(batch) + task }

// ParseResult splits a Result key.
func (k Keys) ParseResult(key string) (batch, task string, err error) {
	parts, err := k.split(key, k.Results(), 2)
	if err != nil {
		return "", "", err
	}
	return parts[0], parts[1], nil
}

func (k Keys) split(key, prefix string, n int) ([]string, error) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not under %q", ErrBadKey, key, prefix)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != n {
		return nil, fmt.Errorf("%w: %q: want %d parts after %q", ErrBadKey, key, n, prefix)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("%w: %q: empty part", ErrBadKey, key)
		}
	}
	return parts, nil
}

// TaskID derives a task's ID from its host name: the same host in the same
// batch is always the same task, which makes sharding idempotent.
func TaskID(host string) string { return url.PathEscape(host) }

// prefixEnd is the end of the range covering every key with prefix p.
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}
