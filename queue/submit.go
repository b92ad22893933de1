package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// SubmitRequest is a batch to store.
type SubmitRequest struct {
	ID     string // required; see NewBatchID and ValidateBatchID
	Check  string
	Params map[string]string
	Hosts  []inventory.Host
	Policy Policy // zero fields take the defaults
	Shards int    // 0: ShardsFor the number of hosts
	// Priority is the batch's share of the workers' listings, from
	// MinPriority to MaxPriority; 0 (normal) by default. See PriorityWeight.
	Priority int
	Now      time.Time

	// Set by a schedule's tick: see BatchSpec.
	Schedule     string
	ScheduledFor time.Time
}

// chunkBytes bounds one inventory chunk, well under etcd's 1.5 MiB request
// limit.
const chunkBytes = 512 << 10

// Submit stores a batch. The inventory goes first, in chunks under a key
// set private to this attempt; the spec and the active-index entry go last,
// in one transaction that succeeds only if the batch ID is unused. So the
// scheduler sees a batch whole or not at all, and a submit that dies
// half-way leaves only chunks that no spec points at.
//
// Resubmitting an ID with the same content returns the stored spec and
// existed=true; with different content it fails with ErrBatchExists.
func (q *Queue) Submit(ctx context.Context, req SubmitRequest) (spec BatchSpec, existed bool, err error) {
	return q.submit(ctx, req, batchGuard{op: "submit"})
}

// batchGuard widens a submit's spec transaction for a caller that creates
// batches on the leader's behalf (a schedule's tick): compares that must
// hold too, and writes that land with the spec or not at all.
type batchGuard struct {
	op    string
	fence *Fence // nil: not a leader write
	cmps  []clientv3.Cmp
	ops   []clientv3.Op
	// anyContent: a stored batch of the same ID is this batch whatever its
	// content (a tick fired once already), never ErrBatchExists.
	anyContent bool
}

func (q *Queue) submit(ctx context.Context, req SubmitRequest, g batchGuard) (spec BatchSpec, existed bool, err error) {
	if err := ValidateBatchID(req.ID); err != nil {
		return BatchSpec{}, false, err
	}
	if len(req.Hosts) == 0 {
		return BatchSpec{}, false, errors.New("queue: a batch needs at least one host")
	}
	if req.Shards <= 0 {
		req.Shards = ShardsFor(len(req.Hosts))
	}
	if req.Shards > MaxShards {
		return BatchSpec{}, false, fmt.Errorf("queue: %d shards asked for; at most %d", req.Shards, MaxShards)
	}
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	req.Policy = req.Policy.withDefaults()
	if err := req.Policy.Validate(); err != nil {
		return BatchSpec{}, false, err
	}
	if err := ValidatePriority(req.Priority); err != nil {
		return BatchSpec{}, false, err
	}
	zones, err := zonesOf(req.Hosts)
	if err != nil {
		return BatchSpec{}, false, err
	}
	dig := digest(req.Check, req.Params, req.Policy, req.Priority, req.Hosts)
	same := func(old BatchSpec) (BatchSpec, bool, error) {
		if g.anyContent {
			return old, true, nil
		}
		return sameBatch(old, dig)
	}

	// A cheap look first, so an idempotent resubmit writes nothing.
	if old, err := q.LoadBatch(ctx, req.ID); err == nil {
		return same(old)
	} else if !errors.Is(err, ErrBatchNotFound) {
		return BatchSpec{}, false, err
	}

	spec = BatchSpec{
		ID:           req.ID,
		Check:        req.Check,
		Params:       req.Params,
		Policy:       req.Policy,
		Hosts:        len(req.Hosts),
		Zones:        zones,
		Shards:       req.Shards,
		Nonce:        newNonce(),
		Digest:       dig,
		CreatedAt:    req.Now.UTC(),
		Priority:     req.Priority,
		Schedule:     req.Schedule,
		ScheduledFor: req.ScheduledFor.UTC(),
	}
	specKey := q.keys.BatchSpec(spec.ID)
	up := q.upload(q.keys.BatchHosts(spec.ID, spec.Nonce), q.keys.BatchUploadStarted(spec.ID, spec.Nonce),
		func(n int) string { return q.keys.BatchHostChunk(spec.ID, spec.Nonce, n) })
	var specJSON string
	// Unless the spec transaction is seen to land, delete the chunks if
	// the stored spec is not this attempt's.
	defer up.abandon(ctx, specKey, &specJSON)
	if spec.Chunks, err = up.put(ctx, req.Hosts, req.Now); err != nil {
		return BatchSpec{}, false, err
	}
	specJSON = mustJSON(spec)

	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(specKey), "=", 0), // the ID is unused
		// The chunks are still there: cleanup deletes them all at once,
		// so chunk 0 stands for every one.
		clientv3.Compare(clientv3.CreateRevision(up.chunk(0)), ">", 0),
	}
	if g.fence != nil {
		cmps = append(cmps, g.fence.Cmp())
	}
	resp, err := q.txn(ctx, g.op).
		If(append(cmps, g.cmps...)...).
		Then(append([]clientv3.Op{
			clientv3.OpPut(specKey, specJSON),
			clientv3.OpPut(q.keys.ActiveBatch(spec.ID), spec.ID),
		}, g.ops...)...).
		Else(clientv3.OpGet(specKey)).
		Commit()
	if err != nil {
		return BatchSpec{}, false, fmt.Errorf("store batch spec: %w", err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 {
			// Another submit of the same ID won the race.
			var old BatchSpec
			if err := decodeKV(kvs[0], &old); err != nil {
				return BatchSpec{}, false, err
			}
			return same(old)
		}
		if g.fence != nil || len(g.cmps) > 0 {
			why := ErrConflict
			if g.fence != nil {
				if why = q.whyRejected(ctx, *g.fence); why == nil {
					why = ErrConflict
				}
			}
			return BatchSpec{}, false, why
		}
		return BatchSpec{}, false, fmt.Errorf("store batch spec: the inventory chunks of %s vanished before the spec was written; submit again", spec.ID)
	}
	up.committed = true
	return spec, false, nil
}

// zonesOf returns the sorted zones of hosts, refusing a zone that cannot
// name one.
func zonesOf(hosts []inventory.Host) ([]string, error) {
	zones := map[string]bool{}
	for _, h := range hosts {
		z := ZoneOf(h)
		if err := ValidateZone(z); err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		zones[z] = true
	}
	return slices.Sorted(maps.Keys(zones)), nil
}

// upload writes an inventory as chunks under a key set private to one
// attempt (a nonce), so that an attempt that dies leaves only chunks no
// record points at, and a concurrent attempt cannot overwrite them.
type upload struct {
	q         *Queue
	prefix    string // every key of the attempt
	started   string // when the attempt began, for cleanup
	chunk     func(n int) string
	committed bool
}

func (q *Queue) upload(prefix, started string, chunk func(int) string) *upload {
	return &upload{q: q, prefix: prefix, started: started, chunk: chunk}
}

// put writes the start time and the chunks, returning how many chunks.
func (u *upload) put(ctx context.Context, hosts []inventory.Host, now time.Time) (int, error) {
	if _, err := u.q.cli.Put(ctx, u.started, now.UTC().Format(time.RFC3339)); err != nil {
		return 0, fmt.Errorf("store inventory: %w", err)
	}
	n := 0
	for i, chunk := range chunkHosts(hosts, chunkBytes) {
		if _, err := u.q.cli.Put(ctx, u.chunk(i), string(chunk)); err != nil {
			return 0, fmt.Errorf("store inventory chunk %d: %w", i, err)
		}
		n++
	}
	return n, nil
}

// abandon deletes the attempt's chunks unless the attempt committed or
// the record at key holds value (its commit landed though its reply was
// lost). Best effort, on its own deadline: the caller's context may be
// what failed.
func (u *upload) abandon(ctx context.Context, key string, value *string) {
	if u.committed {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	u.q.txn(cctx, "submit").
		If(clientv3.Compare(clientv3.Value(key), "=", *value)).
		Else(clientv3.OpDelete(u.prefix, clientv3.WithPrefix())).
		Commit()
}

func sameBatch(old BatchSpec, dig string) (BatchSpec, bool, error) {
	if old.Digest != dig {
		return BatchSpec{}, false, fmt.Errorf("%w: %s (submitted %s); pick another --batch-id or omit it to get a fresh one",
			ErrBatchExists, old.ID, old.CreatedAt.Format(time.RFC3339))
	}
	return old, true, nil
}

// chunkHosts encodes hosts as JSON arrays of at most max bytes each (a
// single larger host stands alone).
func chunkHosts(hosts []inventory.Host, max int) [][]byte {
	var chunks [][]byte
	cur := []byte{'['}
	for _, h := range hosts {
		b, _ := json.Marshal(h)
		if len(cur) > 1 && len(cur)+len(b)+2 > max {
			chunks = append(chunks, append(cur, ']'))
			cur = []byte{'['}
		}
		if len(cur) > 1 {
			cur = append(cur, ',')
		}
		cur = append(cur, b...)
	}
	return append(chunks, append(cur, ']'))
}

// LoadHosts reads a batch's inventory back, in submitted order.
func (q *Queue) LoadHosts(ctx context.Context, spec BatchSpec) ([]inventory.Host, error) {
	return q.loadChunks(ctx, func(n int) string { return q.keys.BatchHostChunk(spec.ID, spec.Nonce, n) },
		spec.Chunks, spec.Hosts, "batch "+spec.ID)
}

// loadChunks reads an inventory stored as chunks chunk(0..n-1) that must
// hold want hosts.
func (q *Queue) loadChunks(ctx context.Context, chunk func(int) string, n, want int, what string) ([]inventory.Host, error) {
	hosts := make([]inventory.Host, 0, want)
	for i := 0; i < n; i++ {
		key := chunk(i)
		resp, err := q.cli.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("%w: inventory chunk %s is missing", ErrBadValue, key)
		}
		var part []inventory.Host
		if err := decodeKV(resp.Kvs[0], &part); err != nil {
			return nil, err
		}
		hosts = append(hosts, part...)
	}
	if len(hosts) != want {
		return nil, fmt.Errorf("%w: %s has %d hosts stored, spec says %d", ErrBadValue, what, len(hosts), want)
	}
	return hosts, nil
}

// AbandonedUploads is how old the chunks of a submit attempt that never
// wrote its spec must be before the leader deletes them.
const AbandonedUploads = 10 * time.Minute

// CleanUploads deletes inventory chunks that no batch spec points at and
// whose submit attempt started before olderThan: what a submit that died
// half-way left behind. It returns how many attempts it cleaned.
func (q *Queue) CleanUploads(ctx context.Context, fence Fence, before time.Time) (int, error) {
	type upload struct{ batch, nonce string }
	var started []upload
	// Keys only: the inventories' chunks under the same prefix are most
	// of its bytes (some 60 MB for a million hosts), read here every pass
	// before.
	_, err := q.rangeAllAt(ctx, q.keys.Batches(), 0, func(kv *mvccpb.KeyValue) error {
		k := strings.TrimPrefix(string(kv.Key), q.keys.Batches())
		parts := strings.Split(k, "/")
		if len(parts) == 4 && parts[1] == "hosts" && parts[3] == "started" {
			started = append(started, upload{parts[0], parts[2]})
		}
		return nil
	}, clientv3.WithKeysOnly())
	if err != nil {
		return 0, err
	}
	cleaned := 0
	for _, u := range started {
		// The marker and the spec, in one round trip: every stored batch
		// keeps its marker, so this runs once per batch and pass.
		resp, err := q.txn(ctx, "read").Then(
			clientv3.OpGet(q.keys.BatchUploadStarted(u.batch, u.nonce)),
			clientv3.OpGet(q.keys.BatchSpec(u.batch)),
		).Commit()
		if err != nil {
			return cleaned, err
		}
		marker := resp.Responses[0].GetResponseRange().Kvs
		if len(marker) == 0 {
			continue // cleaned or purged meanwhile
		}
		t, err := time.Parse(time.RFC3339, string(marker[0].Value))
		if err == nil && t.After(before) {
			continue
		}
		spec, err := specOf(u.batch, resp.Responses[1].GetResponseRange().Kvs)
		if err == nil && spec.Nonce == u.nonce {
			continue // the committed upload
		}
		if err != nil && !errors.Is(err, ErrBatchNotFound) {
			return cleaned, err
		}
		cmps := []clientv3.Cmp{fence.Cmp()}
		if err != nil {
			// No spec yet: delete only if none appears meanwhile. A spec,
			// once written, never changes its nonce.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(q.keys.BatchSpec(u.batch)), "=", 0))
		}
		purged, err := q.txn(ctx, "purge").
			If(cmps...).
			Then(clientv3.OpDelete(q.keys.BatchHosts(u.batch, u.nonce), clientv3.WithPrefix())).
			Commit()
		if err != nil {
			return cleaned, err
		}
		if purged.Succeeded {
			cleaned++
		}
	}
	return cleaned, nil
}
