package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/rs/zerolog"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Queue reads and writes Patrol's state in etcd. It holds no state of its
// own: every method is one or a few etcd requests, safe to call from any
// number of goroutines and processes.
type Queue struct {
	cli  *clientv3.Client
	keys Keys
	obs  Observer       // nil: transactions are not observed
	log  zerolog.Logger // what watches go through; zero: nothing is logged
}

// New returns a Queue over cli, with every key under prefix.
func New(cli *clientv3.Client, prefix string) *Queue {
	return &Queue{cli: cli, keys: NewKeys(prefix), log: zerolog.Nop()}
}

// Keys returns the key builder in use.
func (q *Queue) Keys() Keys { return q.keys }

// Client returns the etcd client in use.
func (q *Queue) Client() *clientv3.Client { return q.cli }

// pageSize bounds one range response: large enough to be cheap, small
// enough to stay far below etcd's request and response limits.
const pageSize = 1000

// rangeAll calls fn for every key under prefix, paging at one pinned
// revision so the listing is a consistent snapshot. It returns that revision.
func (q *Queue) rangeAll(ctx context.Context, prefix string, fn func(*mvccpb.KeyValue) error) (int64, error) {
	return q.rangeAllAt(ctx, prefix, 0, fn)
}

// rangeAllAt is rangeAll at revision rev (0: the current one), with extra
// options for each page (such as clientv3.WithKeysOnly).
func (q *Queue) rangeAllAt(ctx context.Context, prefix string, rev int64, fn func(*mvccpb.KeyValue) error, extra ...clientv3.OpOption) (int64, error) {
	end := prefixEnd(prefix)
	key := prefix
	for {
		opts := append([]clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}, extra...)
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := q.cli.Get(ctx, key, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// count returns how many keys lie under prefix (with extra options such
// as clientv3.WithRev).
func (q *Queue) count(ctx context.Context, prefix string, extra ...clientv3.OpOption) (int64, error) {
	resp, err := q.cli.Get(ctx, prefix, append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}, extra...)...)
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

func newNonce() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewBatchID returns a fresh, time-ordered batch ID such as
// "20261125-130306-3fa9c2".
func NewBatchID(now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// LoadBatch returns a batch's spec.
func (q *Queue) LoadBatch(ctx context.Context, batch string) (BatchSpec, error) {
	resp, err := q.cli.Get(ctx, q.keys.BatchSpec(batch))
	if err != nil {
		return BatchSpec{}, err
	}
	return specOf(batch, resp.Kvs)
}

// specOf decodes a batch's spec from what a read of its key found.
func specOf(batch string, kvs []*mvccpb.KeyValue) (BatchSpec, error) {
	if len(kvs) == 0 {
		return BatchSpec{}, fmt.Errorf("%w: %s", ErrBatchNotFound, batch)
	}
	var spec BatchSpec
	if err := decode(string(kvs[0].Key), kvs[0].Value, &spec); err != nil {
		return BatchSpec{}, err
	}
	return spec, nil
}

// Summary returns a finished batch's summary, and false while it runs.
func (q *Queue) Summary(ctx context.Context, batch string) (Summary, bool, error) {
	resp, err := q.cli.Get(ctx, q.keys.BatchSummary(batch))
	if err != nil {
		return Summary{}, false, err
	}
	return summaryOf(resp.Kvs)
}

// summaryOf decodes a summary from what a read of its key found.
func summaryOf(kvs []*mvccpb.KeyValue) (Summary, bool, error) {
	if len(kvs) == 0 {
		return Summary{}, false, nil
	}
	var s Summary
	if err := decodeKV(kvs[0], &s); err != nil {
		return Summary{}, false, err
	}
	return s, true, nil
}

// decodeJSON is decode for callers that hold a KeyValue.
func decodeKV(kv *mvccpb.KeyValue, v any) error { return decode(string(kv.Key), kv.Value, v) }
