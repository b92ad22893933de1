package queue

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// splitAbove is how many keys a listing's window may hold before
// rangeSplit narrows the next one.
const splitAbove = 16 * pageSize

// rangeSplit is rangeAll for prefixes of very many keys. etcd counts every
// key of a range, from its start to its end, to answer even a limited
// request: paging a million keys 1000 at a time to the prefix's end walks
// half a billion index entries (a page from the start of 300,000 keys
// took 220 ms here, one bounded to its own keys 9 ms). rangeSplit asks
// for windows instead: from the last key read to the end of that key's
// first p bytes as a prefix (host0001234 with p = 8: up to host0002).
// Each answer's count says whether the window held more than splitAbove
// keys (p grows: narrower windows) or less than a page (p shrinks), so the
// windows settle on what the keys look like and each request counts a
// window, not the rest of the prefix. It calls fn for the same keys, in
// the same order, at one pinned revision, as rangeAll.
func (q *Queue) rangeSplit(ctx context.Context, prefix string, fn func(*mvccpb.KeyValue) error, extra ...clientv3.OpOption) (int64, error) {
	return q.rangeSplitFrom(ctx, prefix, prefix, true, fn, extra...)
}

// rangeSplitFrom is rangeSplit from the key from, within prefix. With pin
// false every window is read at the revision current when it is asked
// for: a listing that takes minutes is then not cut short by a
// compaction, at the cost of seeing keys written (or deleted) as it goes.
// extra options (such as clientv3.WithKeysOnly) go with every request.
func (q *Queue) rangeSplitFrom(ctx context.Context, prefix, from string, pin bool, fn func(*mvccpb.KeyValue) error, extra ...clientv3.OpOption) (int64, error) {
	var rev int64
	end := prefixEnd(prefix)
	p := len(prefix) // the window is the first p bytes of the last key read, as a prefix
	last := prefix
	for from < end {
		w := end
		if p > len(prefix) && p <= len(last) {
			if e := prefixEnd(last[:p]); e > from && e < end {
				w = e
			}
		}
		opts := append([]clientv3.OpOption{clientv3.WithRange(w), clientv3.WithLimit(pageSize)}, extra...)
		if rev != 0 && pin {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := q.cli.Get(ctx, from, opts...)
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
		if len(resp.Kvs) > 0 {
			last = string(resp.Kvs[len(resp.Kvs)-1].Key)
		}
		switch {
		case resp.Count > splitAbove && p < len(last):
			p++
		case resp.Count < pageSize && w != end && p > len(prefix):
			p--
		}
		if resp.More {
			from = last + "\x00"
		} else {
			from = w
		}
	}
	return rev, nil
}
