package queue

import (
	"context"
	"math/big"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// splitAbove is how many keys may be left in a range before rangeSplit
// halves it.
const splitAbove = 16 * pageSize

// rangeSplit is rangeAll for prefixes of very many keys. etcd counts every
// key of a range, from its start to its end, to answer even a limited
// request; paging a million keys 1000 at a time to the prefix's end
// walks half a billion index entries. rangeSplit reads the count each
// page reports anyway and, while more than splitAbove keys are left,
// lists a window first: as far past the page as the page's own keys
// spanned, times splitAbove/pageSize (as byte strings read as numbers),
// which holds about splitAbove keys where the keys are spread as in the
// page; where that fails, half the rest. Each request then counts a
// window, not the rest of the prefix. It calls fn for the same keys, in
// the same order, at one pinned revision, as rangeAll.
func (q *Queue) rangeSplit(ctx context.Context, prefix string, fn func(*mvccpb.KeyValue) error) (int64, error) {
	var rev int64
	var walk func(from, end string) error
	walk = func(from, end string) error {
		for from < end {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			resp, err := q.cli.Get(ctx, from, opts...)
			if err != nil {
				return err
			}
			if rev == 0 {
				rev = resp.Header.Revision
			}
			for _, kv := range resp.Kvs {
				if err := fn(kv); err != nil {
					return err
				}
			}
			if !resp.More || len(resp.Kvs) == 0 {
				return nil
			}
			next := string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			if resp.Count-int64(len(resp.Kvs)) > splitAbove {
				first := string(resp.Kvs[0].Key)
				win, ok := extrapolate(first, next, splitAbove/len(resp.Kvs), end)
				if !ok {
					win, ok = midKey(next, end)
				}
				if mid := win; ok {
					if err := walk(next, mid); err != nil {
						return err
					}
					from = mid
					continue
				}
			}
			from = next
		}
		return nil
	}
	err := walk(prefix, prefixEnd(prefix)) // asks at least once: rev is set unless it failed
	return rev, err
}

// midKey returns a key halfway between a and b (a < b) as byte strings,
// and false when none lies strictly between them at that precision.
func midKey(a, b string) (string, bool) {
	n := max(len(a), len(b)) + 1
	pad := func(s string) *big.Int {
		buf := make([]byte, n)
		copy(buf, s)
		return new(big.Int).SetBytes(buf)
	}
	m := new(big.Int).Add(pad(a), pad(b))
	m.Rsh(m, 1)
	mid := string(m.FillBytes(make([]byte, n)))
	if mid <= a || mid >= b {
		return "", false
	}
	return mid, true
}

// extrapolate returns b + (b - a) × k, as byte strings read as numbers,
// when it lies strictly between b and end.
func extrapolate(a, b string, k int, end string) (string, bool) {
	n := max(len(a), len(b), len(end)) + 1
	pad := func(s string) *big.Int {
		buf := make([]byte, n)
		copy(buf, s)
		return new(big.Int).SetBytes(buf)
	}
	A, B := pad(a), pad(b)
	d := new(big.Int).Sub(B, A)
	if d.Sign() <= 0 {
		return "", false
	}
	e := d.Mul(d, big.NewInt(int64(k)))
	e.Add(e, B)
	if e.BitLen() > 8*n {
		return "", false
	}
	w := string(e.FillBytes(make([]byte, n)))
	if w <= b || w >= end {
		return "", false
	}
	return w, true
}
