package scheduler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/scheduler"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// ticks returns the n ticks of expr after from, in UTC.
func ticks(t *testing.T, expr string, every time.Duration, from string, n int) []string {
	t.Helper()
	c, err := scheduler.ParseCadence(expr, every)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tk := range c.NextTicks(utc(from), n) {
		s := tk.At.UTC().Format(time.RFC3339)
		if tk.Moved != "" {
			s += " (from " + tk.Moved + ")"
		}
		out = append(out, s)
	}
	return out
}

func TestCadenceAcrossDSTAndLeapDay(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		every      time.Duration
		from       string
		want       []string
	}{
		{"Berlin spring forward: 02:30 does not exist, runs when the gap ends", "CRON_TZ=Europe/Berlin 30 2 * * *", 0, "2026-03-28T12:00:00Z",
			[]string{"2026-03-29T01:00:00Z (from 02:30:00)", "2026-03-30T00:30:00Z"}},
		{"Berlin fall back: 02:30 happens twice, runs once (the first)", "CRON_TZ=Europe/Berlin 30 2 * * *", 0, "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		{"Berlin hourly across spring forward: no gap, no duplicate", "CRON_TZ=Europe/Berlin 0 * * * *", 0, "2026-03-28T22:30:00Z",
			[]string{"2026-03-28T23:00:00Z", "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z (from 02:00:00)", "2026-03-29T02:00:00Z"}},
		{"Berlin hourly across fall back: the repeated hour runs once", "CRON_TZ=Europe/Berlin 0 * * * *", 0, "2026-10-24T23:30:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"}},
		{"New York spring forward", "CRON_TZ=America/New_York 15 2 * * *", 0, "2026-03-07T12:00:00Z",
			[]string{"2026-03-08T07:00:00Z (from 02:15:00)", "2026-03-09T06:15:00Z"}},
		{"New York fall back", "CRON_TZ=America/New_York 30 1 * * *", 0, "2026-10-31T12:00:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{"every gap minute maps to one run", "CRON_TZ=Europe/Berlin */20 2 * * *", 0, "2026-03-29T00:00:00Z",
			[]string{"2026-03-29T01:00:00Z (from 02:00:00)", "2026-03-30T00:00:00Z"}},
		{"leap day only", "0 0 29 2 *", 0, "2026-03-01T00:00:00Z",
			[]string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"daily across a leap day", "@daily", 0, "2028-02-27T12:00:00Z",
			[]string{"2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"}},
		{"seconds field", "*/20 * * * * *", 0, "2026-12-06T06:00:05Z",
			[]string{"2026-12-06T06:00:20Z", "2026-12-06T06:00:40Z", "2026-12-06T06:01:00Z"}},
		{"no time zone is UTC", "0 6 * * *", 0, "2026-12-06T06:00:00Z",
			[]string{"2026-12-07T06:00:00Z"}},
		{"day of month or day of week", "0 0 1 * MON", 0, "2026-11-28T00:00:00Z",
			[]string{"2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z", "2026-12-07T00:00:00Z"}},
		{"--every is aligned to the epoch", "", 2 * time.Second, "2026-12-06T06:00:03Z",
			[]string{"2026-12-06T06:00:04Z", "2026-12-06T06:00:06Z"}},
		{"@every is aligned to the epoch", "@every 5m", 0, "2026-12-06T06:03:00Z",
			[]string{"2026-12-06T06:05:00Z", "2026-12-06T06:10:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ticks(t, tc.expr, tc.every, tc.from, len(tc.want))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("ticks after %s:\n got %q\nwant %q", tc.from, got, tc.want)
			}
		})
	}
}

func TestCadenceRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		expr  string
		every time.Duration
		want  string
	}{
		{"61 * * * *", 0, "write 5 fields"},
		{"CRON_TZ=Mars/Olympus 0 6 * * *", 0, "bad location"},
		{"CRON_TZ=Europe/Berlin", 0, "needs a schedule after it"},
		{"0 6 * * *", time.Minute, "both --cron and --every"},
		{"", 0, "no cadence"},
		{"", 500 * time.Millisecond, "at least 1s"},
		{"", 1500 * time.Millisecond, "whole seconds"},
	} {
		_, err := scheduler.ParseCadence(tc.expr, tc.every)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCadence(%q, %s) = %v, want an error saying %q", tc.expr, tc.every, err, tc.want)
		}
	}
}

func TestJitterIsFixedPerTick(t *testing.T) {
	tick := utc("2026-12-06T06:00:00Z")
	a := scheduler.JitterOf("disk", tick, 30*time.Second)
	if b := scheduler.JitterOf("disk", tick, 30*time.Second); a != b {
		t.Fatalf("jitter of one tick differs between calls: %s, %s", a, b)
	}
	seen := map[time.Duration]bool{}
	for i := range 50 {
		j := scheduler.JitterOf("disk", tick.Add(time.Duration(i)*time.Minute), 30*time.Second)
		if j < 0 || j >= 30*time.Second {
			t.Fatalf("jitter %s outside [0, 30s)", j)
		}
		seen[j] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 ticks got only %d distinct jitters: not spread", len(seen))
	}
	if j := scheduler.JitterOf("disk", tick, 0); j != 0 {
		t.Fatalf("no jitter asked, got %s", j)
	}
}
