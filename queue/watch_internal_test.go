package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestWatchReasonNamesWhyAWatchEnded: each way a watch ends has its own
// reason, wrapped or not, and every reason is one metrics know.
func TestWatchReasonNamesWhyAWatchEnded(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{rpctypes.ErrCompacted, "compacted"},
		{rpctypes.ErrGRPCCompacted, "compacted"},
		{rpctypes.ErrNoLeader, "no_leader"},
		{rpctypes.ErrGRPCNoLeader, "no_leader"},
		{ErrWatchClosed, "closed"},
		{context.Canceled, "closed"},
		{fmt.Errorf("%w: %w", errListFailed, context.DeadlineExceeded), "list_failed"},
		{errors.New("something else"), "error"},
	} {
		got := watchReason(c.err)
		if got != c.want {
			t.Errorf("watchReason(%v) = %q, want %q", c.err, got, c.want)
		}
		found := false
		for _, r := range WatchReasons {
			found = found || r == got
		}
		if !found {
			t.Errorf("reason %q is not in WatchReasons %v", got, WatchReasons)
		}
	}
}

// TestKindNamesTheKeyKind: watches are named by the first segment under
// the prefix, whatever follows.
func TestKindNamesTheKeyKind(t *testing.T) {
	k := NewKeys("/p")
	for key, want := range map[string]string{
		k.Active(): "active", k.Workers(): "workers", k.Assignment("dc2"): "assign", k.Cancels(): "cancels",
		"/elsewhere/x": "other", "/p/": "other",
	} {
		if got := k.kind(key); got != want {
			t.Errorf("kind(%q) = %q, want %q", key, got, want)
		}
	}
}
