package farbench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/nettest"
)

func BenchmarkTmpProxy(b *testing.B) {
	e := newEnv(b)
	px, _ := nettest.NewProxy(e.srv.Endpoint(), 30*time.Millisecond)
	defer px.Close()
	cli := e.client(b, px.Addr())
	defer cli.Close()
	for b.Loop() {
		for _, size := range []int{100, 30000} {
			val := strings.Repeat("x", size)
			cli.Put(context.Background(), "/warm", "x")
			start := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var done []time.Duration
			for i := range 8 {
				wg.Go(func() {
					_, err := cli.Txn(context.Background()).If(clientv3.Compare(clientv3.CreateRevision("/nope"), "=", 0)).Then(clientv3.OpPut(fmt.Sprintf("/k%d", i), val)).Commit()
					if err != nil {
						b.Error(err)
					}
					mu.Lock()
					done = append(done, time.Since(start))
					mu.Unlock()
				})
			}
			wg.Wait()
			fmt.Fprintln(os.Stderr, size, done)
		}
	}
}
