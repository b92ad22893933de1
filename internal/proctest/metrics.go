package proctest

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MetricsAddr returns where the process serves /metrics: it is started
// with port 0 and logs the address it got. It fails t if the process has
// logged none within 10s.
func (p *Proc) MetricsAddr(t testing.TB) string {
	t.Helper()
	return p.WaitLog(t, 10*time.Second, "metrics listening", nil).Str("addr")
}

// Scrape reads the process's /metrics and returns every series by its
// text form (name and labels as printed), e.g.
// `patrol_worker_results_committed_total{check="noop",status="ok"}`.
func (p *Proc) Scrape(t testing.TB) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.MetricsAddr(t) + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", p.name, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("scrape %s: bad line %q", p.name, line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad line %q", p.name, line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", p.name, err)
	}
	return out
}
