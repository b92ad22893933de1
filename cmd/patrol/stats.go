package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/patrol-dev/patrol/queue"
)

// detailStats summarises one numeric detail across a batch's hosts.
type detailStats struct {
	Detail string  `json:"detail"`
	Count  int     `json:"count"` // hosts whose result has it as a number
	Min    float64 `json:"min"`
	P50    float64 `json:"p50"`
	P95    float64 `json:"p95"`
	Max    float64 `json:"max"`
	// LowIsWorse says which end is bad: certificate days left, free space
	// (a Nagios threshold such as "20:"), rather than time or usage.
	LowIsWorse bool        `json:"low_is_worse"`
	Worst      []hostValue `json:"worst"` // up to 3, worst first
}

type hostValue struct {
	Host  string  `json:"host"`
	Value float64 `json:"value"`
}

// notMeasured are details that look numeric but measure nothing: a
// certificate serial number in hex, icmp's requests sent (the count param,
// the same on every host), a plugin's thresholds and bounds.
func notMeasured(key string) bool {
	if key == "serial" || key == "sent" {
		return true
	}
	for _, s := range []string{".warn", ".crit", ".min", ".max"} {
		if strings.HasPrefix(key, "perf.") && strings.HasSuffix(key, s) {
			return true
		}
	}
	return false
}

// lowIsWorse guesses which end of a detail is bad: certificate days left
// and icmp replies received are worse low; a plugin's value whose
// threshold is "N:" (alert below N) too; everything else (times, sizes,
// usage, loss) is worse high.
func lowIsWorse(key string, rows []queue.HostResult) bool {
	if key == "days_left" || key == "received" {
		return true
	}
	for _, r := range rows {
		for _, s := range []string{".warn", ".crit"} {
			if t := r.Details[key+s]; t != "" {
				return strings.HasSuffix(t, ":") && !strings.HasPrefix(t, "@")
			}
		}
	}
	return false
}

// resultStats summarises every numeric detail of rows, by detail name.
func resultStats(rows []queue.HostResult) []detailStats {
	values := map[string][]hostValue{}
	for _, r := range rows {
		for k, v := range r.Details {
			if notMeasured(k) {
				continue
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				continue
			}
			values[k] = append(values[k], hostValue{r.Host, f})
		}
	}
	var out []detailStats
	for _, k := range sortedKeys(values) {
		vs := values[k]
		slices.SortStableFunc(vs, func(a, b hostValue) int {
			if c := cmpFloat(a.Value, b.Value); c != 0 {
				return c
			}
			return strings.Compare(a.Host, b.Host)
		})
		s := detailStats{Detail: k, Count: len(vs), Min: vs[0].Value, Max: vs[len(vs)-1].Value,
			P50: rank(vs, 0.50), P95: rank(vs, 0.95), LowIsWorse: lowIsWorse(k, rows)}
		n := min(3, len(vs))
		if s.LowIsWorse {
			s.Worst = slices.Clone(vs[:n])
		} else {
			for i := range n {
				s.Worst = append(s.Worst, vs[len(vs)-1-i])
			}
		}
		out = append(out, s)
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rank is the nearest-rank percentile q of sorted values.
func rank(sorted []hostValue, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))].Value
}

func printStats(w io.Writer, stats []detailStats) {
	if len(stats) == 0 {
		fmt.Fprintln(w, "no numeric details among these hosts' results")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DETAIL\tHOSTS\tMIN\tP50\tP95\tMAX\tWORST")
	for _, s := range stats {
		worst := make([]string, len(s.Worst))
		for i, hv := range s.Worst {
			worst[i] = fmt.Sprintf("%s (%s)", hv.Host, num(hv.Value))
		}
		dir := "highest"
		if s.LowIsWorse {
			dir = "lowest"
		}
		what := dir + ": " + strings.Join(worst, ", ")
		if s.Count > 1 && s.Min == s.Max {
			what = "(the same on every host)" // no host is worst
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Detail, s.Count, num(s.Min), num(s.P50), num(s.P95), num(s.Max), what)
	}
	tw.Flush()
}

// num writes a number as briefly as it reads exactly.
func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
