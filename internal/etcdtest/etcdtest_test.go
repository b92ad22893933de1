package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestMain(m *testing.M) { Main(m) }

func TestPrefixesAreFreshAndReal(t *testing.T) {
	a, b := New(t), New(t)
	if a.Prefix == b.Prefix {
		t.Fatalf("two envs share prefix %q", a.Prefix)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A compare-and-put only a real etcd decides: the second create must lose.
	key := a.Prefix + "/k"
	create := func() bool {
		resp, err := a.Client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, "v")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !create() || create() {
		t.Fatal("create-if-absent did not succeed exactly once")
	}
	if got := Keys(t, b.Client, b.Prefix); len(got) != 0 {
		t.Fatalf("b sees a's keys: %v", got)
	}
	if got := Keys(t, b.Client, a.Prefix); len(got) != 1 || got[0] != key {
		t.Fatalf("keys under a: %v", got)
	}
}
