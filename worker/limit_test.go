package worker

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func feed(l *requestLimit, d time.Duration, n int) {
	for range n {
		l.observe(d)
	}
}

// TestRequestLimitFollowsTheBaselineNotTheDistance: a worker far from a
// healthy etcd keeps the whole pipeline; one whose etcd slows well past
// its own baseline backs off to 1, and recovers when latency comes back.
func TestRequestLimitFollowsTheBaselineNotTheDistance(t *testing.T) {
	var changes []int
	l := newRequestLimit(zerolog.Nop(), func(n int) { changes = append(changes, n) })
	feed(l, 200*time.Millisecond, 500) // 100 ms each way, healthy
	if got := l.get(); got != MaxRequestLimit {
		t.Fatalf("far, healthy etcd: limit %d, want %d", got, MaxRequestLimit)
	}
	feed(l, 350*time.Millisecond, 50) // noise within tolerance: a busy machine
	if got := l.get(); got != MaxRequestLimit {
		t.Fatalf("latency 1.75x baseline: limit %d, want %d kept", got, MaxRequestLimit)
	}
	feed(l, 2*time.Second, 60) // 10x the baseline: etcd saturated
	if got := l.get(); got != 1 {
		t.Fatalf("saturated etcd: limit %d, want 1", got)
	}
	feed(l, 200*time.Millisecond, 50)
	if got := l.get(); got != MaxRequestLimit {
		t.Fatalf("recovered etcd: limit %d, want %d", got, MaxRequestLimit)
	}
	if len(changes) < 2 || changes[len(changes)-1] != MaxRequestLimit {
		t.Fatalf("changes reported %v, want the fall and the recovery", changes)
	}
}

// TestRequestLimitFixed: a pinned limit does not move.
func TestRequestLimitFixed(t *testing.T) {
	l := newRequestLimit(zerolog.Nop(), nil)
	l.fix(3)
	feed(l, time.Millisecond, 50)
	feed(l, time.Second, 50)
	if got := l.get(); got != 3 {
		t.Fatalf("fixed limit moved to %d", got)
	}
}

// TestCallTimeoutFitsTheLink: the deadline is the floor next to etcd and
// four times the 90th percentile of recent calls far from it, capped; a
// few slow calls (an etcd election) do not stretch it.
func TestCallTimeoutFitsTheLink(t *testing.T) {
	l := newRequestLimit(zerolog.Nop(), nil)
	if got := l.timeout(5 * time.Second); got != 5*time.Second {
		t.Fatalf("no samples: %s, want the floor", got)
	}
	feed(l, 2*time.Millisecond, 64)
	if got := l.timeout(5 * time.Second); got != 5*time.Second {
		t.Fatalf("near etcd: %s, want the floor", got)
	}
	feed(l, 10*time.Second, 6)
	if got := l.timeout(5 * time.Second); got != 5*time.Second {
		t.Fatalf("6 of 64 calls waited out an election: %s, want the floor", got)
	}
	feed(l, 2*time.Second, 64)
	if got := l.timeout(5 * time.Second); got != 8*time.Second {
		t.Fatalf("a link where calls take 2s: %s, want 8s", got)
	}
	feed(l, time.Minute, 64)
	if got := l.timeout(5 * time.Second); got != MaxCallTimeout {
		t.Fatalf("stuck calls: %s, want the cap %s", got, MaxCallTimeout)
	}
}
