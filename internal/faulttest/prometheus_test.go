//go:build linux

package faulttest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestPrometheusScrapesPatrolDev: a real Prometheus (Debian's package)
// scrapes a running `patrol dev` while it runs a batch, and PromQL queries
// for a lease metric, a queue metric and the results return Patrol's
// figures.
func TestPrometheusScrapesPatrolDev(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		msg := "needs Prometheus' server: apt-get install -y prometheus"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	h := setup(t)
	dev := h.start("dev", "dev", "--listen-client", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "etcd"), "--workers", "2")
	etcdAddr := dev.WaitLog(t, 10*time.Second, "embedded etcd serving clients", nil).Str("endpoint")
	target := dev.MetricsAddr(t)

	dir := t.TempDir()
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: patrol-dev\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	prom := exec.Command(promBin, "--config.file", filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", promAddr, "--log.level", "warn")
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	prom.Stdout, prom.Stderr = logFile, logFile
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Kill()
		prom.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", b)
		}
	})

	inv, _ := inventory(t, "prom", 50)
	h.runEnv(30*time.Second, []string{"PATROL_ENDPOINTS=" + etcdAddr}, "submit", "-i", inv, "--check", "noop", "--batch-id", "prom", "--wait")

	// Each query is retried until Prometheus has scraped what it asks.
	for _, q := range []struct {
		query string
		want  float64
	}{
		{`patrol_queue_worker_leases{zone="default"}`, 2},                          // leases: both dev workers
		{`patrol_scheduler_leader`, 1},                                             // leadership
		{`count(patrol_queue_tasks{zone="default"})`, 4},                           // queue: its four states
		{`sum(patrol_worker_results_committed_total{status="ok"})`, 50},            // throughput's source
		{`patrol_queue_up`, 1},                                                     // etcd read at scrape time
		{`count(patrol_etcd_txn_duration_seconds_bucket{op="claim"}) > bool 0`, 1}, // etcd latency, by op
	} {
		got, err := promQuery(t, promAddr, q.query, q.want, 60*time.Second)
		if err != nil {
			t.Fatalf("query %s: %v", q.query, err)
		}
		t.Logf("prometheus: %s = %v", q.query, got)
	}
}

// promQuery runs query against Prometheus until it returns one sample of
// value want, or timeout passes.
func promQuery(t *testing.T, addr, query string, want float64, timeout time.Duration) (float64, error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := "no answer"
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(query))
		if err == nil {
			var body struct {
				Status string `json:"status"`
				Data   struct {
					Result []struct {
						Value [2]any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err == nil && body.Status == "success" && len(body.Data.Result) == 1 {
				s, _ := body.Data.Result[0].Value[1].(string)
				v, _ := strconv.ParseFloat(s, 64)
				if v == want {
					return v, nil
				}
				last = fmt.Sprintf("value %v", v)
			} else if err == nil {
				last = fmt.Sprintf("%d series", len(body.Data.Result))
			}
		}
		if err != nil {
			last = err.Error()
		}
		<-tick.C
	}
	return 0, fmt.Errorf("want %v; last: %s", want, last)
}

// freeAddr returns a loopback address with a port free at the time, for a
// server that cannot say which port it took when given port 0.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
