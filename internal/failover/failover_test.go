package failover

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/patrol-dev/patrol/internal/etcdtest"
	"github.com/patrol-dev/patrol/internal/logging"
	"github.com/patrol-dev/patrol/internal/nettest"
)

// fixture is a client given two endpoints, each a proxy to the test etcd,
// and Run following it.
type fixture struct {
	a, b    *nettest.Proxy
	cli     *clientv3.Client
	changes chan int // answering endpoints, after each change
}

func start(t *testing.T) *fixture {
	t.Helper()
	ep := etcdtest.Endpoint(t)
	f := &fixture{changes: make(chan int, 16)}
	for _, p := range []**nettest.Proxy{&f.a, &f.b} {
		px, err := nettest.NewProxy(ep, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		*p = px
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{f.a.Addr(), f.b.Addr()},
		DialTimeout: 5 * time.Second,
		Logger:      logging.Zap(zerolog.Nop(), zapcore.ErrorLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.cli = cli
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	first := true
	wg.Go(func() {
		Run(ctx, cli, Config{Every: 100 * time.Millisecond, Timeout: 300 * time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t)),
			Changed: func(answering, configured int) {
				if configured != 2 {
					t.Errorf("configured endpoints %d, want 2", configured)
				}
				if first {
					first = false
					return
				}
				f.changes <- answering
			}})
	})
	t.Cleanup(func() { cancel(); wg.Wait(); cli.Close() })
	return f
}

// await waits for the next change and checks how many endpoints answer
// and which the client uses.
func (f *fixture) await(t *testing.T, answering int, using ...string) {
	t.Helper()
	select {
	case n := <-f.changes:
		if n != answering {
			t.Fatalf("%d endpoints answer, want %d", n, answering)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no change within 30s; want %d answering", answering)
	}
	if got := f.cli.Endpoints(); !slices.Equal(got, using) {
		t.Fatalf("client uses %v, want %v", got, using)
	}
}

// TestAHungMemberIsLeftAndTakenBack holds every request to one endpoint
// (as a SIGSTOPped member would) and checks that the client stops using
// it, so that every request succeeds within a deadline far shorter than
// gRPC's keepalive would take, and uses it again once it answers.
func TestAHungMemberIsLeftAndTakenBack(t *testing.T) {
	f := start(t)
	f.a.Hold()
	f.await(t, 1, f.b.Addr())
	// Without failover, about half of these would go to the held proxy
	// and time out.
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := f.cli.Get(ctx, "failover-test")
		cancel()
		if err != nil {
			t.Fatalf("get %d after the hung member was left: %v", i, err)
		}
	}
	f.a.Release()
	f.await(t, 2, f.a.Addr(), f.b.Addr())
}

// TestNoMemberAnsweringKeepsEveryEndpoint holds both endpoints: the client
// must keep both, so it reconnects to whichever comes back.
func TestNoMemberAnsweringKeepsEveryEndpoint(t *testing.T) {
	f := start(t)
	f.a.Hold()
	f.await(t, 1, f.b.Addr())
	f.b.Hold()
	f.await(t, 0, f.a.Addr(), f.b.Addr())
	f.b.Release()
	f.await(t, 1, f.b.Addr())
}
