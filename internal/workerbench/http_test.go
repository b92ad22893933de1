package workerbench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/internal/proctest"
	"github.com/patrol-dev/patrol/queue"
)

const (
	httpHosts       = 20000
	httpConcurrency = 1000
	// httpDelay is how long the server takes to answer: long enough that
	// a worker running checks one after another could not keep up.
	httpDelay = 20 * time.Millisecond
	// The saturation phase: a server slow enough that the worker's
	// claims outpace it, so that --concurrency is what bounds the checks
	// in flight, and the peak RSS is that of 1000 checks at once.
	satHosts = 10000
	satDelay = 500 * time.Millisecond
	// targetHTTPRSS is the worker's peak resident set the figure is
	// printed against.
	targetHTTPRSS = 128 << 20
)

// BenchmarkHTTPConcurrency1000 measures, on one embedded etcd with fsync on,
// one `patrol scheduler` and ONE `patrol worker --concurrency 1000` child
// process running the http check against a local server:
//
//	(a) a 20,000-host batch, the server answering 200 after 20ms: tasks/s
//	    from submit to the summary written (seen by a watch), the most
//	    requests the server had in flight, and the worker's peak resident
//	    set (VmHWM);
//	(b) then, on the same worker, a 10,000-host batch against a server
//	    answering after 500ms, which the worker cannot outrun: its checks
//	    in flight reach --concurrency, and its peak RSS is then that of
//	    1000 checks at once. The RSS target (< 128 MiB) is judged on it.
//
// Each iteration runs fresh servers, scheduler and worker under a fresh
// prefix; the figures printed are medians (RSS: the maximum).
//
//	go test -run '^$' -bench HTTPConcurrency1000 -benchtime 3x ./internal/workerbench/
func BenchmarkHTTPConcurrency1000(b *testing.B) {
	skipUnlessLinux(b)
	// The server holds a connection per request in flight, and Go's server
	// keeps each closed one for up to 500ms more (its RST-avoidance
	// delay): at several thousand requests/s that is thousands of fds.
	nofile := raiseNofile(b, 4096)
	bin := proctest.Binary(b)
	endpoint, cli := startEtcd(b)
	inv := benchHosts(httpHosts)

	var runs []httpRun
	for i := 0; b.Loop(); i++ {
		runs = append(runs, httpOnce(b, bin, endpoint, cli, fmt.Sprintf("/workerbench-http-%d", i), inv))
	}

	rate := median(runs, func(r httpRun) float64 { return r.fast.rate(httpHosts) })
	secs := median(runs, func(r httpRun) float64 { return r.fast.done.Seconds() })
	satRate := median(runs, func(r httpRun) float64 { return r.sat.rate(satHosts) })
	var rss, satRSS int64
	var each []string
	for _, r := range runs {
		rss, satRSS = max(rss, r.fast.rss), max(satRSS, r.sat.rss)
		each = append(each, fmt.Sprintf("%.2fs/%.0f/s/%dMiB", r.fast.done.Seconds(), r.fast.rate(httpHosts), r.fast.rss>>20))
	}
	m := medianRun(runs, func(r httpRun) float64 { return r.fast.rate(httpHosts) })
	verdict := func(rss int64) string {
		if rss >= targetHTTPRSS {
			return "OVER"
		}
		return "within"
	}
	fmt.Fprintf(os.Stderr, "\nhttp, 1 worker at --concurrency %d: %d hosts in %.2fs = %.0f tasks/s; worker peak RSS %d MiB (target < %d MiB: %s)\n"+
		"  median of %d runs (each: time/rate/RSS %s); embedded etcd with fsync on, RLIMIT_NOFILE %d\n"+
		"  ceiling at %s per check and %d at once: %.0f tasks/s; the server saw at most %d requests in flight\n"+
		"  median run: submit %.2fs, sharded %.2fs, first claim %.2fs, summary %.2fs; %d claims (%.1f tasks each, one every %.1fms), %.2f etcd revisions/task; etcd request limit went as low as %d (of 8)\n"+
		"    CPU: %s\n"+
		"  saturated (%d hosts answering after %s, same worker): %.0f tasks/s (ceiling %.0f), %d requests in flight at most; worker peak RSS %d MiB (target < %d MiB: %s)\n",
		httpConcurrency, httpHosts, secs, rate, rss>>20, targetHTTPRSS>>20, verdict(rss),
		len(runs), strings.Join(each, " "), nofile,
		httpDelay, httpConcurrency, float64(httpConcurrency)/httpDelay.Seconds(), m.fast.peakInFlight,
		m.fast.submit.Seconds(), m.fast.sharded.Seconds(), m.fast.firstClaim.Seconds(), m.fast.done.Seconds(),
		m.fast.claims, float64(httpHosts)/float64(max(1, m.fast.claims)), m.fast.claimEvery(), float64(m.fast.revs)/httpHosts, m.fast.minLimit,
		m.fast.cpu,
		satHosts, satDelay, satRate, float64(httpConcurrency)/satDelay.Seconds(), m.sat.peakInFlight, satRSS>>20, targetHTTPRSS>>20, verdict(satRSS))
	b.ReportMetric(0, "ns/op") // an iteration also starts processes and cleans up: not a figure
	b.ReportMetric(rate, "tasks/s")
	b.ReportMetric(secs, "s-to-summary")
	b.ReportMetric(float64(rss)/(1<<20), "MiB-peak-rss")
	b.ReportMetric(float64(satRSS)/(1<<20), "MiB-peak-rss-at-1000")
}

// httpRun is one iteration's figures: the 20ms phase and the saturated one.
type httpRun struct{ fast, sat httpPhase }

// httpPhase is one batch's figures.
type httpPhase struct {
	batchRun
	rss          int64 // the worker's VmHWM so far, bytes
	peakInFlight int64 // most requests the server had in flight at once
	minLimit     int   // the worker's lowest etcd request limit so far
	cpu          cpuUse
}

func (p httpPhase) rate(hosts int) float64 { return float64(hosts) / p.done.Seconds() }

func httpOnce(b *testing.B, bin, endpoint string, cli *clientv3.Client, prefix string, inv []inventory.Host) httpRun {
	c := startCluster(b, bin, endpoint, cli, prefix, "--concurrency", strconv.Itoa(httpConcurrency))
	defer c.stop(b)
	run := httpRun{
		fast: httpBatch(b, c, "fast", httpDelay, inv),
		sat:  httpBatch(b, c, "saturated", satDelay, inv[:satHosts]),
	}
	c.stop(b)
	return run
}

// httpBatch runs one http batch against a fresh server answering after
// delay.
func httpBatch(b *testing.B, c *cluster, id string, delay time.Duration, inv []inventory.Host) httpPhase {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv := newSlowServer(delay)
	b.Cleanup(srv.Close) // and at the end of the batch, below
	cpu := c.cpuMark(b)
	r, err := runBatch(ctx, c.cli, queue.New(c.cli, c.prefix), queue.SubmitRequest{ID: id, Check: "http",
		Params: map[string]string{"url": srv.URL + "/health"}, Hosts: inv})
	if err != nil {
		b.Fatal(err) // the children's cleanups print their logs
	}
	p := httpPhase{batchRun: r, cpu: cpu(), minLimit: c.minRequestLimit()}
	if p.rss, err = c.worker.PeakRSS(); err != nil {
		b.Fatal(err)
	}
	srv.Close()
	if n := srv.requests.Load(); n != int64(len(inv)) {
		b.Errorf("%s: the server answered %d requests for %d hosts", id, n, len(inv))
	}
	p.peakInFlight = srv.peak.Load()
	return p
}

// slowServer answers every request 200 after a delay, counting how many
// it has in flight.
type slowServer struct {
	*httptest.Server
	inFlight, peak, requests atomic.Int64
}

func newSlowServer(delay time.Duration) *slowServer {
	s := &slowServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		s.requests.Add(1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		t := time.NewTimer(delay) // the latency being simulated, not a synchronisation
		defer t.Stop()
		select {
		case <-t.C:
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	}))
	// The listener's backlog is the kernel's somaxconn (4096 by default),
	// above the 1000 connections the worker opens at once; the server
	// has no connection cap of its own.
	s.Start()
	return s
}
