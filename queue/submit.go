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
	Shards int    // default DefaultShards
	// Priority is the batch's share of the workers' listings, from
	// MinPriority to MaxPriority; 0 (normal) by default. See PriorityWeight.
	Priority int
	Now      time.Time
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
	if err := ValidateBatchID(req.ID); err != nil {
		return BatchSpec{}, false, err
	}
	if len(req.Hosts) == 0 {
		return BatchSpec{}, false, errors.New("queue: a batch needs at least one host")
	}
	if req.Shards <= 0 {
		req.Shards = DefaultShards
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
	zones := map[string]bool{}
	for _, h := range req.Hosts {
		z := ZoneOf(h)
		if err := ValidateZone(z); err != nil {
			return BatchSpec{}, false, fmt.Errorf("host %s: %w", h.Name, err)
		}
		zones[z] = true
	}
	dig := digest(req.Check, req.Params, req.Policy, req.Priority, req.Hosts)

	// A cheap look first, so an idempotent resubmit writes nothing.
	if old, err := q.LoadBatch(ctx, req.ID); err == nil {
		return sameBatch(old, dig)
	} else if !errors.Is(err, ErrBatchNotFound) {
		return BatchSpec{}, false, err
	}

	spec = BatchSpec{
		ID:        req.ID,
		Check:     req.Check,
		Params:    req.Params,
		Policy:    req.Policy,
		Hosts:     len(req.Hosts),
		Zones:     slices.Sorted(maps.Keys(zones)),
		Shards:    req.Shards,
		Nonce:     newNonce(),
		Digest:    dig,
		Priority:  req.Priority,
		CreatedAt: req.Now.UTC(),
	}
	committed := false
	chunks := q.keys.BatchHosts(spec.ID, spec.Nonce)
	specKey := q.keys.BatchSpec(spec.ID)
	var specJSON string
	defer func() {
		if committed {
			return
		}
		// Best effort, on its own deadline: the caller's context may be
		// what failed. A spec transaction whose reply was lost may still
		// have landed, so delete the chunks only if the stored spec is not
		// this attempt's.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		q.txn(cctx, "submit").
			If(clientv3.Compare(clientv3.Value(specKey), "=", specJSON)).
			Else(clientv3.OpDelete(chunks, clientv3.WithPrefix())).
			Commit()
	}()

	if _, err := q.cli.Put(ctx, q.keys.BatchUploadStarted(spec.ID, spec.Nonce), req.Now.UTC().Format(time.RFC3339)); err != nil {
		return BatchSpec{}, false, fmt.Errorf("store inventory: %w", err)
	}
	for i, chunk := range chunkHosts(req.Hosts, chunkBytes) {
		if _, err := q.cli.Put(ctx, q.keys.BatchHostChunk(spec.ID, spec.Nonce, i), string(chunk)); err != nil {
			return BatchSpec{}, false, fmt.Errorf("store inventory chunk %d: %w", i, err)
		}
		spec.Chunks++
	}

	specJSON = mustJSON(spec)
	resp, err := q.txn(ctx, "submit").
		If(
			clientv3.Compare(clientv3.CreateRevision(specKey), "=", 0), // the ID is unused
			// The chunks are still there: cleanup deletes them all at once,
			// so chunk 0 stands for every one.
			clientv3.Compare(clientv3.CreateRevision(q.keys.BatchHostChunk(spec.ID, spec.Nonce, 0)), ">", 0),
		).
		Then(
			clientv3.OpPut(specKey, specJSON),
			clientv3.OpPut(q.keys.ActiveBatch(spec.ID), spec.ID),
		).
		Else(clientv3.OpGet(specKey)).
		Commit()
	if err != nil {
		return BatchSpec{}, false, fmt.Errorf("store batch spec: %w", err)
	}
	if !resp.Succeeded {
		// Another submit of the same ID won the race.
		kvs := resp.Responses[0].GetResponseRange().Kvs
		var old BatchSpec
		if len(kvs) == 0 {
			return BatchSpec{}, false, fmt.Errorf("store batch spec: the inventory chunks of %s vanished before the spec was written; submit again", spec.ID)
		}
		if err := decodeKV(kvs[0], &old); err != nil {
			return BatchSpec{}, false, err
		}
		return sameBatch(old, dig)
	}
	committed = true
	return spec, false, nil
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
	hosts := make([]inventory.Host, 0, spec.Hosts)
	for i := 0; i < spec.Chunks; i++ {
		key := q.keys.BatchHostChunk(spec.ID, spec.Nonce, i)
		resp, err := q.cli.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("%w: inventory chunk %s is missing", ErrBadValue, key)
		}
		var chunk []inventory.Host
		if err := decodeKV(resp.Kvs[0], &chunk); err != nil {
			return nil, err
		}
		hosts = append(hosts, chunk...)
	}
	if len(hosts) != spec.Hosts {
		return nil, fmt.Errorf("%w: batch %s has %d hosts stored, spec says %d", ErrBadValue, spec.ID, len(hosts), spec.Hosts)
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
	started := map[upload]string{}
	_, err := q.rangeAll(ctx, q.keys.Batches(), func(kv *mvccpb.KeyValue) error {
		k := strings.TrimPrefix(string(kv.Key), q.keys.Batches())
		parts := strings.Split(k, "/")
		if len(parts) == 4 && parts[1] == "hosts" && parts[3] == "started" {
			started[upload{parts[0], parts[2]}] = string(kv.Value)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	cleaned := 0
	for u, at := range started {
		t, err := time.Parse(time.RFC3339, at)
		if err == nil && t.After(before) {
			continue
		}
		spec, err := q.LoadBatch(ctx, u.batch)
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
		resp, err := q.txn(ctx, "purge").
			If(cmps...).
			Then(clientv3.OpDelete(q.keys.BatchHosts(u.batch, u.nonce), clientv3.WithPrefix())).
			Commit()
		if err != nil {
			return cleaned, err
		}
		if resp.Succeeded {
			cleaned++
		}
	}
	return cleaned, nil
}
