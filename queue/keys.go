package queue

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Keys builds and parses every etcd key Patrol uses. It is the only place
// where key strings are put together: the schema below is the whole of
// Patrol's state. A task is always in exactly one of ready, delayed,
// running (inside its group's record) or results; every transition moves it
// in one transaction.
//
//	<prefix>/election/<lease>                   scheduler election (concurrency.Election); value: LeaderInfo JSON
//	<prefix>/active/<batch>                     a batch the scheduler still has work for; value: batch ID
//	<prefix>/finished/<batch>                   a finished batch, for retention; value: finish time (RFC 3339)
//	<prefix>/batches/<batch>/spec               BatchSpec JSON; written last by submit, so its presence commits the batch
//	<prefix>/batches/<batch>/hosts/<nonce>/<n>  inventory chunk n of the submit attempt nonce; value: []inventory.Host JSON
//	<prefix>/batches/<batch>/hosts/<nonce>/started  when that attempt began (RFC 3339), to clean up after one that died
//	<prefix>/batches/<batch>/progress/<lane>    hosts of a sharding lane written so far (decimal), advanced with each chunk
//	<prefix>/batches/<batch>/stop               why the batch stops early: "cancelled" or "skipped" (max failures)
//	<prefix>/batches/<batch>/retry              a pending retry request: RetryRequest JSON
//	<prefix>/batches/<batch>/summary            Summary JSON, written once when every host has a result
//	<prefix>/batches/<batch>/counts             PublishedCounts JSON: the results per status, as the leader last counted them (about once a second)
//	<prefix>/cancels/<batch>                    cancel marker workers watch to abort running checks; value: time
//	<prefix>/ready/<zone>/<shard>/<batch>/<task> a claimable Task JSON (with the attempt it runs as)
//	<prefix>/delayed/<batch>/<task>             a Task waiting out its retry backoff (NotBefore set)
//	<prefix>/held/<batch>/<task>                a Task held back by the batch's --parallel cap until the leader releases it
//	<prefix>/claims/<group>                     Claim JSON, bound to the claiming worker's lease: the fencing token
//	<prefix>/running/<group>                    Running JSON: the claimed tasks, durable, outliving the lease
//	<prefix>/done/<group>                       indexes of the group's tasks already finished (comma separated)
//	<prefix>/results/<batch>/<task>             Result JSON, committed once per round
//	<prefix>/wake                               bumped whenever tasks become ready; workers watch it
//	<prefix>/workers/<id>                       WorkerInfo JSON, attached to the worker's lease; "stopping" set just before a clean stop
//	<prefix>/assign/<zone>                      Assignment JSON: the zone's shards spread over its live workers
//	<prefix>/quarantine/<key>                   a malformed value moved aside, under its original key
//	<prefix>/schedules/<name>                   ScheduleSpec JSON: a recurring batch's cadence, check, policy and inventory version
//	<prefix>/schedule-hosts/<name>/<nonce>/<n>  inventory chunk n of the schedule's inventory version nonce
//	<prefix>/schedule-state/<name>              ScheduleState JSON, written by the leader with each tick it deals with
//	<prefix>/schedule-trigger/<name>            a `patrol schedule trigger` request not yet run; value: when it was asked (RFC 3339)
//	<prefix>/schedule-runs/<name>/<batch>       the schedule's run index; value: the tick it ran for (RFC 3339)
//
// Batch IDs, zones, worker IDs and group IDs never contain "/"; task IDs are path-escaped host names.
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

// Finished is the prefix of the finished-batch index.
func (k Keys) Finished() string { return k.prefix + "/finished/" }

// FinishedBatch marks a batch finished at the time in its value.
func (k Keys) FinishedBatch(batch string) string { return k.Finished() + batch }

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

// BatchUploadStarted holds when a submit attempt began writing its chunks,
// so that the leader can delete the chunks of an attempt that died.
func (k Keys) BatchUploadStarted(batch, nonce string) string {
	return k.BatchHosts(batch, nonce) + "started"
}

// BatchHostChunk holds inventory chunk n of a submit attempt.
func (k Keys) BatchHostChunk(batch, nonce string, n int) string {
	return fmt.Sprintf("%s%06d", k.BatchHosts(batch, nonce), n)
}

// BatchProgress is the prefix of a batch's sharding lanes' progress.
func (k Keys) BatchProgress(batch string) string { return k.Batch(batch) + "progress/" }

// BatchLane holds how many hosts of one sharding lane are written.
func (k Keys) BatchLane(batch string, lane int) string {
	return fmt.Sprintf("%s%02d", k.BatchProgress(batch), lane)
}

// BatchStop holds why a batch stops early.
func (k Keys) BatchStop(batch string) string { return k.Batch(batch) + "stop" }

// BatchRetry holds a pending retry request for a finished batch.
func (k Keys) BatchRetry(batch string) string { return k.Batch(batch) + "retry" }

// Cancels is the prefix of cancel markers.
func (k Keys) Cancels() string { return k.prefix + "/cancels/" }

// Cancel marks a batch cancelled, for workers to abort its running checks.
func (k Keys) Cancel(batch string) string { return k.Cancels() + batch }

// Delayed is the prefix of tasks waiting out a retry backoff.
func (k Keys) Delayed() string { return k.prefix + "/delayed/" }

// BatchDelayed is the prefix of one batch's delayed tasks.
func (k Keys) BatchDelayed(batch string) string { return k.Delayed() + batch + "/" }

// DelayedTask holds a task waiting out its backoff.
func (k Keys) DelayedTask(batch, task string) string { return k.BatchDelayed(batch) + task }

// ParseDelayed splits a DelayedTask key.
func (k Keys) ParseDelayed(key string) (batch, task string, err error) {
	parts, err := k.split(key, k.Delayed(), 2)
	if err != nil {
		return "", "", err
	}
	return parts[0], parts[1], nil
}

// Running is the prefix of claimed groups' durable records.
func (k Keys) Running() string { return k.prefix + "/running/" }

// RunningGroup holds a claimed group's tasks.
func (k Keys) RunningGroup(group string) string { return k.Running() + group }

// Done is the prefix of claimed groups' finished-task sets.
func (k Keys) Done() string { return k.prefix + "/done/" }

// DoneGroup holds which of a group's tasks are finished.
func (k Keys) DoneGroup(group string) string { return k.Done() + group }

// Wake is bumped whenever tasks become ready. Its value is WakeSharded
// when a sharding transaction wrote them (a claimer need only look ahead
// of its cursors: ReadyCursor.ResetAhead), empty otherwise (tasks made
// ready again, anywhere: ReadyCursor.Reset).
func (k Keys) Wake() string { return k.prefix + "/wake" }

// WakeSharded is Keys.Wake's value after a sharding transaction that is
// not its lane's last.
const WakeSharded = "sharded"

// Quarantine holds a malformed value moved aside from key.
func (k Keys) Quarantine(key string) string {
	return k.prefix + "/quarantine/" + strings.TrimPrefix(key, k.prefix+"/")
}

// BatchCounts is where the leader publishes a running batch's result
// counts.
func (k Keys) BatchCounts(batch string) string { return k.Batch(batch) + "counts" }

// BatchSummary holds the batch's Summary once it has finished.
func (k Keys) BatchSummary(batch string) string { return k.Batch(batch) + "summary" }

// Ready is the prefix of every claimable task.
func (k Keys) Ready() string { return k.prefix + "/ready/" }

// ReadyZone is the prefix of one zone's claimable tasks.
func (k Keys) ReadyZone(zone string) string { return k.Ready() + zone + "/" }

// ReadyShard is the prefix of one shard's claimable tasks in a zone.
func (k Keys) ReadyShard(zone string, shard int) string {
	return fmt.Sprintf("%s%03d/", k.ReadyZone(zone), shard)
}

// ReadyBatchShard is the prefix of one batch's claimable tasks in a shard
// of a zone: what a worker's listing reads per batch.
func (k Keys) ReadyBatchShard(zone string, shard int, batch string) string {
	return k.ReadyShard(zone, shard) + batch + "/"
}

// ReadyTask marks a task as claimable; its value is the Task to run.
func (k Keys) ReadyTask(zone string, shard int, batch, task string) string {
	return k.ReadyBatchShard(zone, shard, batch) + task
}

// ReadyKey is ReadyTask for t.
func (k Keys) ReadyKey(t Task) string { return k.ReadyTask(t.Zone, t.Shard, t.Batch, t.ID) }

// ParseReady splits a ReadyTask key.
func (k Keys) ParseReady(key string) (zone string, shard int, batch, task string, err error) {
	parts, err := k.split(key, k.Ready(), 4)
	if err != nil {
		return "", 0, "", "", err
	}
	shard, err = strconv.Atoi(parts[1])
	if err != nil {
		return "", 0, "", "", fmt.Errorf("%w: %q: bad shard", ErrBadKey, key)
	}
	return parts[0], shard, parts[2], parts[3], nil
}

// Held is the prefix of tasks held back by a batch's --parallel cap.
func (k Keys) Held() string { return k.prefix + "/held/" }

// BatchHeld is the prefix of one batch's held tasks.
func (k Keys) BatchHeld(batch string) string { return k.Held() + batch + "/" }

// HeldTask holds a task not yet released to its ready queue.
func (k Keys) HeldTask(batch, task string) string { return k.BatchHeld(batch) + task }

// Workers is the prefix of worker registrations.
func (k Keys) Workers() string { return k.prefix + "/workers/" }

// Worker holds a live worker's registration, attached to its lease.
func (k Keys) Worker(id string) string { return k.Workers() + id }

// Assignments is the prefix of the leader's shard assignments.
func (k Keys) Assignments() string { return k.prefix + "/assign/" }

// Assignment holds which of a zone's workers claims from which shards first.
func (k Keys) Assignment(zone string) string { return k.Assignments() + zone }

// Claims is the prefix of every claim.
func (k Keys) Claims() string { return k.prefix + "/claims/" }

// Claim holds a group's claim, attached to the worker's lease.
func (k Keys) Claim(group string) string { return k.Claims() + group }

// ParseGroup returns the group ID of a Claim, RunningGroup or DoneGroup key.
func (k Keys) ParseGroup(key string) (string, error) {
	for _, p := range []string{k.Claims(), k.Running(), k.Done()} {
		if strings.HasPrefix(key, p) {
			parts, err := k.split(key, p, 1)
			if err != nil {
				return "", err
			}
			return parts[0], nil
		}
	}
	return "", fmt.Errorf("%w: %q is not a group key", ErrBadKey, key)
}

// Schedules is the prefix of every schedule's spec.
func (k Keys) Schedules() string { return k.prefix + "/schedules/" }

// Schedule holds a schedule's ScheduleSpec.
func (k Keys) Schedule(name string) string { return k.Schedules() + name }

// ParseSchedule returns the name of a Schedule key.
func (k Keys) ParseSchedule(key string) (string, error) {
	parts, err := k.split(key, k.Schedules(), 1)
	if err != nil {
		return "", err
	}
	return parts[0], nil
}

// ScheduleInventories is the prefix of every schedule's inventory chunks.
func (k Keys) ScheduleInventories() string { return k.prefix + "/schedule-hosts/" }

// ScheduleHosts is the prefix of a schedule's inventory chunks (every
// version when nonce is empty).
func (k Keys) ScheduleHosts(name, nonce string) string {
	p := k.ScheduleInventories() + name + "/"
	if nonce != "" {
		p += nonce + "/"
	}
	return p
}

// ScheduleHostChunk holds inventory chunk n of a schedule's inventory version.
func (k Keys) ScheduleHostChunk(name, nonce string, n int) string {
	return fmt.Sprintf("%s%06d", k.ScheduleHosts(name, nonce), n)
}

// ScheduleStates is the prefix of every schedule's state.
func (k Keys) ScheduleStates() string { return k.prefix + "/schedule-state/" }

// ScheduleState holds what the leader did with a schedule's ticks.
func (k Keys) ScheduleState(name string) string { return k.ScheduleStates() + name }

// ScheduleTriggers is the prefix of pending trigger requests.
func (k Keys) ScheduleTriggers() string { return k.prefix + "/schedule-trigger/" }

// ScheduleTrigger holds a pending `patrol schedule trigger` request.
func (k Keys) ScheduleTrigger(name string) string { return k.ScheduleTriggers() + name }

// ScheduleRuns is the prefix of a schedule's run index.
func (k Keys) ScheduleRuns(name string) string { return k.prefix + "/schedule-runs/" + name + "/" }

// ScheduleRun records that batch is one of the schedule's runs.
func (k Keys) ScheduleRun(name, batch string) string { return k.ScheduleRuns(name) + batch }

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

// kind names the kind of key under which key (a key or a prefix) lies:
// the first segment after the queue's prefix ("active", "results",
// "workers", ...), or "other". It names watches in logs and metrics.
func (k Keys) kind(key string) string {
	rest, ok := strings.CutPrefix(key, k.prefix+"/")
	if !ok {
		return "other"
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	if rest == "" {
		return "other"
	}
	return rest
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
