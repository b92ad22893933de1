package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/patrol-dev/patrol/queue"
)

func TestResultStats(t *testing.T) {
	var rows []queue.HostResult
	for i := 1; i <= 20; i++ {
		d := map[string]string{
			"ttfb_ms":         strconv.Itoa(i) + ".5",
			"days_left":       strconv.Itoa(100 - i),
			"serial":          "1234", // hex: not a measurement
			"output":          "text", // not a number
			"perf./":          "1000", // a plugin's value...
			"perf./.warn":     "20:",  // ...alerting below its threshold: low is worse
			"perf.load1":      "0.5",  // and one alerting above
			"perf.load1.max":  "100",  // bounds are not measurements
			"perf.load1.crit": "2",
		}
		if i == 7 {
			d["perf./"] = "10"
		}
		rows = append(rows, queue.HostResult{Result: queue.Result{Host: "h" + strconv.Itoa(i), Details: d}})
	}
	rows = append(rows, queue.HostResult{Result: queue.Result{Host: "none"}}) // no details at all
	stats := resultStats(rows)
	var names []string
	by := map[string]detailStats{}
	for _, s := range stats {
		names = append(names, s.Detail)
		by[s.Detail] = s
	}
	if got := strings.Join(names, " "); got != "days_left perf./ perf.load1 ttfb_ms" {
		t.Fatalf("details summarised: %s", got)
	}
	ttfb := by["ttfb_ms"]
	if ttfb.Count != 20 || ttfb.Min != 1.5 || ttfb.P50 != 10.5 || ttfb.P95 != 19.5 || ttfb.Max != 20.5 || ttfb.LowIsWorse {
		t.Errorf("ttfb_ms: %+v", ttfb)
	}
	if w := ttfb.Worst; len(w) != 3 || w[0].Host != "h20" || w[1].Host != "h19" || w[2].Host != "h18" {
		t.Errorf("ttfb_ms worst: %+v, want h20, h19, h18 (highest)", w)
	}
	days := by["days_left"]
	if !days.LowIsWorse || days.Worst[0].Host != "h20" || days.Worst[0].Value != 80 {
		t.Errorf("days_left: %+v, want the lowest worst, h20 (80)", days)
	}
	if root := by["perf./"]; !root.LowIsWorse || root.Worst[0].Host != "h7" || root.Worst[0].Value != 10 {
		t.Errorf("perf./: %+v, want low worse (threshold 20:), h7 first", root)
	}
	if load := by["perf.load1"]; load.LowIsWorse {
		t.Errorf("perf.load1: %+v, want high worse (threshold 2)", load)
	}

	var b strings.Builder
	printStats(&b, stats)
	lines := strings.Split(b.String(), "\n")
	if !strings.HasPrefix(lines[0], "DETAIL") || !strings.Contains(b.String(), "lowest: h20 (80), h19 (81), h18 (82)") ||
		!strings.Contains(b.String(), "highest: h20 (20.5), h19 (19.5), h18 (18.5)") {
		t.Errorf("printStats:\n%s", b.String())
	}
}

// TestResultStatsICMP: the hosts that got the fewest replies are the
// worst; the requests sent, the same everywhere, are not summarised; a
// detail equal on every host names no worst host.
func TestResultStatsICMP(t *testing.T) {
	var rows []queue.HostResult
	for i, got := range []string{"3", "1", "2", "3"} {
		rows = append(rows, queue.HostResult{Result: queue.Result{Host: "h" + strconv.Itoa(i+1),
			Details: map[string]string{"sent": "3", "received": got, "rtt_avg_ms": "0.050"}}})
	}
	stats := resultStats(rows)
	var names []string
	by := map[string]detailStats{}
	for _, s := range stats {
		names = append(names, s.Detail)
		by[s.Detail] = s
	}
	if got := strings.Join(names, " "); got != "received rtt_avg_ms" {
		t.Fatalf("details summarised: %s, want received rtt_avg_ms (not sent)", got)
	}
	if r := by["received"]; !r.LowIsWorse || r.Worst[0].Host != "h2" || r.Worst[1].Host != "h3" {
		t.Errorf("received: %+v, want the fewest replies worst: h2, h3", r)
	}
	var b strings.Builder
	printStats(&b, stats)
	if !strings.Contains(b.String(), "lowest: h2 (1), h3 (2), h1 (3)") || !strings.Contains(b.String(), "(the same on every host)") {
		t.Errorf("printStats:\n%s", b.String())
	}
}
