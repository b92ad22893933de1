package queue

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/etcdtest"
)

// TestRangeSplitListsAsRangeAll: the split listing gives every key once,
// in order, at one revision, as the plain paged listing does, for a
// prefix large enough to be split.
func TestRangeSplitListsAsRangeAll(t *testing.T) {
	env := etcdtest.New(t)
	q := New(env.Client, env.Prefix)
	ctx := context.Background()
	prefix := q.keys.BatchResults("b")
	n := splitAbove + 3*pageSize + 17
	var ops []clientv3.Op
	for i := range n {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("%shost%06d.example.net", prefix, i*7%n), "x"))
		if len(ops) == 64 || i == n-1 {
			if _, err := env.Client.Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	// Keys of other shapes: shorter, a prefix of others, past them all.
	for _, k := range []string{"a", "host", "host000001", "host000001.example.net.x", "zz", "\x7f\x7f"} {
		if _, err := env.Client.Put(ctx, prefix+k, "x"); err != nil {
			t.Fatal(err)
		}
	}
	n += 6
	// A key just past the prefix must not be listed.
	if _, err := env.Client.Put(ctx, prefixEnd(prefix), "outside"); err != nil {
		t.Fatal(err)
	}
	var plain, split []string
	rev1, err := q.rangeAll(ctx, prefix, func(kv *mvccpb.KeyValue) error { plain = append(plain, string(kv.Key)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	rev2, err := q.rangeSplit(ctx, prefix, func(kv *mvccpb.KeyValue) error { split = append(split, string(kv.Key)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != n || !slices.Equal(plain, split) || rev1 != rev2 {
		t.Fatalf("rangeAll listed %d keys at %d, rangeSplit %d at %d; equal: %v", len(plain), rev1, len(split), rev2, slices.Equal(plain, split))
	}
	var none []string
	if _, err := q.rangeSplit(ctx, q.keys.BatchResults("empty"), func(kv *mvccpb.KeyValue) error { none = append(none, string(kv.Key)); return nil }); err != nil || len(none) != 0 {
		t.Fatalf("empty prefix: %v %v", none, err)
	}
}
