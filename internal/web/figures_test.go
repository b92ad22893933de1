package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/web"
	"github.com/patrol-dev/patrol/queue"
)

// TestFiguresLargeBatch measures the API and the console against one large
// batch: PATROL_WEB_FIGURES=1000000 go test -run FiguresLargeBatch -v
// -timeout 30m ./internal/web/. It prints figures and asserts none (the
// machine's speed is not the code's): API p50/p99 for a batch summary and
// a results page, the console's first load of the batch, and the etcd
// reads a live-progress client adds. Skipped unless PATROL_WEB_FIGURES
// names the batch's size.
func TestFiguresLargeBatch(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PATROL_WEB_FIGURES"))
	if n <= 0 {
		t.Skip("figures only: set PATROL_WEB_FIGURES to a batch size (e.g. 1000000)")
	}
	e := setup(t, setupOpts{noFleet: true, followIdle: web.DefaultFollowIdle})
	ctx := context.Background()

	// The batch: n hosts, every one with a result (0.1% failed), no
	// summary: a batch whose last results are in, as the console sees it
	// before the leader writes its summary, so that counts come from the
	// server's follower (the costlier way).
	start := time.Now()
	hosts := make([]inventory.Host, n)
	for i := range hosts {
		hosts[i] = inventory.Host{Name: fmt.Sprintf("host%07d.example.net", i), Address: fmt.Sprintf("host%07d.example.net", i)}
	}
	spec, _, err := e.q.Submit(ctx, queue.SubmitRequest{ID: "big", Check: "tcp", Params: map[string]string{"port": "22"}, Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	seedResults(t, e, spec, hosts)
	t.Logf("seeded a batch of %d hosts with %d results in %s", n, n, time.Since(start).Round(time.Second))

	// The first summary: the server lists the results once.
	start = time.Now()
	var b batch
	for !b.Exact {
		e.call("GET", "/api/v1/batches/big", "", nil, &b)
	}
	t.Logf("first summary with exact counts after %s (the follower listing %d results); counts %v", time.Since(start).Round(time.Millisecond), n, b.Counts)
	var mem runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&mem)
	t.Logf("heap in use with the batch followed: %.0f MiB (test process: etcd member, server, client)", float64(mem.HeapInuse)/(1<<20))

	lat := func(name, path string, next func(body []byte) string) {
		var ds []time.Duration
		for i := range 200 {
			p := path
			if next != nil && i > 0 {
				p = path + "&after=" + next(nil)
			}
			t0 := time.Now()
			resp, err := e.srv.Client().Get(e.srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ds = append(ds, time.Since(t0))
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
			}
			if next != nil {
				next(body)
			}
		}
		slices.Sort(ds)
		t.Logf("API %-40s p50 %6.2f ms  p99 %6.2f ms  (200 requests, one at a time)", name, ms(ds[len(ds)/2]), ms(ds[len(ds)*99/100]))
	}
	lat("batch summary", "/api/v1/batches/big", nil)
	cursor := func() func([]byte) string {
		c := ""
		return func(body []byte) string {
			if body != nil {
				var p struct{ Next string }
				json.Unmarshal(body, &p)
				c = p.Next
			}
			return c
		}
	}
	lat("results page (100, paging on)", "/api/v1/batches/big/results?limit=100", cursor())
	mid := fmt.Sprintf("host%07d.example.net", n/2)
	lat("results page (100, middle of the batch)", "/api/v1/batches/big/results?limit=100&after="+mid, nil)
	lat("failing hosts page (100, index)", "/api/v1/batches/big/results?limit=100&status=fail,error,dead", nil)
	lat("one host", "/api/v1/batches/big/hosts/"+mid, nil)
	lat("batch list", "/api/v1/batches", nil)
	lat("console batch page (HTML)", "/batches/big", nil)
	lat("console batch list (HTML)", "/", nil)

	// etcd reads a live-progress client adds: etcd's own count of range
	// requests, with no client, one and ten, each for 5 s.
	for _, clients := range []int{0, 1, 10} {
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range clients {
			events := e.stream(cctx, "/api/v1/events?batch=big")
			<-events
			wg.Go(func() {
				for range events {
				}
			})
		}
		before := etcdRanges(t)
		time.Sleep(5 * time.Second) // a measuring window, not a wait for an event
		after := etcdRanges(t)
		cancel()
		wg.Wait()
		t.Logf("live progress: %2d clients of the running batch: etcd range requests %.1f/s (the whole test process)", clients, (after-before)/5)
	}

	// The console's first load of the batch page, in Chromium.
	if chromium := chromiumPath(); chromium != "" {
		actx, cancelA := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1280, 900), chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")))...)
		defer cancelA()
		bctx, cancelB := chromedp.NewContext(actx)
		defer cancelB()
		if err := chromedp.Do(bctx); err != nil {
			t.Fatal(err)
		}
		br := &browser{t: t, ctx: bctx, dir: screenshotDir(t), base: e.srv.URL}
		start := time.Now()
		br.do("open the big batch", chromedp.Navigate(e.srv.URL+"/batches/big"), chromedp.Query(chromedp.CSS("table.results"), chromedp.NodeVisible))
		t.Logf("console: batch page of %d hosts shown in %s (navigation to its failing hosts table visible)", n, time.Since(start).Round(time.Millisecond))
		br.measure(fmt.Sprintf("the batch page of %d hosts", n))
		br.shot("big-batch")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// seedResults writes a result for every host, as workers would commit
// them, 64 to a transaction, 32 transactions at once.
func seedResults(t *testing.T, e *env, spec queue.BatchSpec, hosts []inventory.Host) {
	t.Helper()
	ctx := context.Background()
	keys := e.q.Keys()
	work := make(chan []inventory.Host)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			for chunk := range work {
				ops := make([]clientv3.Op, len(chunk))
				for i, h := range chunk {
					st, msg := queue.StatusOK, "connected in 1ms"
					if strings.HasSuffix(h.Name[:11], "999") { // 1 in 1000
						st, msg = queue.StatusFail, "connect: connection refused"
					}
					r := queue.Result{Host: h.Name, Status: st, Attempts: 1, Message: msg, DurationMS: 1, Worker: "seed", FinishedAt: time.Now()}
					v, err := json.Marshal(r)
					if err != nil {
						errs <- err
						return
					}
					ops[i] = clientv3.OpPut(keys.Result(spec.ID, queue.TaskID(h.Name)), string(v))
				}
				if _, err := e.q.Client().Txn(ctx).Then(ops...).Commit(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for chunk := range slices.Chunk(hosts, 64) {
		select {
		case work <- chunk:
		case err := <-errs:
			close(work)
			wg.Wait()
			t.Fatal(err)
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// etcdRanges is how many range requests the embedded etcd member in this
// process has served (its own metric).
func etcdRanges(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_mvcc_range_total" {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	var names []string
	for _, mf := range mfs {
		if strings.Contains(mf.GetName(), "range") {
			names = append(names, mf.GetName())
		}
	}
	t.Fatalf("no etcd_mvcc_range_total in this process's default registry (range metrics: %v)", names)
	return 0
}
