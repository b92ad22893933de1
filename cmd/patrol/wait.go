package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// waitBatch shows a batch's progress on w until it finishes and returns
// its summary. On a terminal a progress bar redraws in place; elsewhere a
// plain line is printed every few seconds. It ends with the summary and the
// hosts that did not pass. Interrupting leaves the batch running and exits
// 130.
func waitBatch(ctx context.Context, q *queue.Queue, batch string, w io.Writer) (queue.Summary, error) {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	every := 5 * time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastPrint time.Time
	start := time.Now()
	rate := &rateMeter{}
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sum, done, err := q.Summary(cctx, batch)
		if err == nil && !done && time.Since(lastPrint) >= every {
			var counts queue.Counts
			var spec queue.BatchSpec
			counts, spec, _, err = q.Count(cctx, batch)
			if err == nil {
				rate.observe(counts.Done())
				line := progressLine(spec, counts, time.Since(start)) + rate.String(spec.Hosts-counts.Done())
				if tty {
					fmt.Fprintf(w, "\r\033[K%s %s", bar(counts.Done(), spec.Hosts), line)
				} else {
					fmt.Fprintln(w, line)
				}
				lastPrint = time.Now()
			}
		}
		cancel()
		if ctx.Err() != nil {
			if tty {
				fmt.Fprintln(w)
			}
			return queue.Summary{}, exitErr{code: exitInterrupted,
				msg: fmt.Sprintf("interrupted; batch %s keeps running: follow it with `patrol status %s`, or re-attach with `patrol watch %s`", batch, batch, batch)}
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return queue.Summary{}, fmt.Errorf("follow batch %s: %w", batch, err)
		}
		if done {
			if tty {
				fmt.Fprint(w, "\r\033[K")
			}
			fmt.Fprintf(w, "batch %s finished in %s: %s\n", batch, time.Since(start).Round(time.Millisecond), summaryLine(sum))
			if sum.Failed() || sum.Warned() {
				printNotOK(ctx, q, batch, w)
			}
			return sum, nil
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// printNotOK lists the hosts that did not end ok (warnings first), by status, with numbered
// runs of names compacted (web01..web05 as web[01:05]).
func printNotOK(ctx context.Context, q *queue.Queue, batch string, w io.Writer) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rows, _, err := q.Results(cctx, batch)
	if err != nil {
		return
	}
	byStatus := map[queue.Status][]string{}
	for _, r := range rows {
		if r.Status != queue.StatusOK {
			byStatus[r.Status] = append(byStatus[r.Status], r.Host)
		}
	}
	for _, st := range queue.Statuses()[1:] {
		if hosts := byStatus[st]; len(hosts) > 0 {
			fmt.Fprintf(w, "  %s: %s\n", st, compactHosts(hosts, 20))
		}
	}
	var which []string
	if len(byStatus[queue.StatusWarn]) > 0 {
		which = append(which, string(queue.StatusWarn))
	}
	if len(byStatus)-len(which) > 0 {
		which = append(which, "fail,error,dead")
	}
	fmt.Fprintf(w, "  details: patrol results %s --status %s\n", batch, strings.Join(which, ","))
}

// rateMeter estimates hosts per second over the recent past.
type rateMeter struct {
	samples []rateSample
}

type rateSample struct {
	at   time.Time
	done int
}

func (r *rateMeter) observe(done int) {
	now := time.Now()
	r.samples = append(r.samples, rateSample{now, done})
	for len(r.samples) > 2 && now.Sub(r.samples[0].at) > 10*time.Second {
		r.samples = r.samples[1:]
	}
}

// String gives the rate and the time left for remaining hosts.
func (r *rateMeter) String(remaining int) string {
	if len(r.samples) < 2 {
		return ""
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	secs := last.at.Sub(first.at).Seconds()
	if secs <= 0 || last.done <= first.done {
		return ""
	}
	perSec := float64(last.done-first.done) / secs
	eta := time.Duration(float64(remaining) / perSec * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf(", %.0f hosts/s, ETA %s", perSec, eta)
}

func bar(done, total int) string {
	const width = 30
	n := 0
	if total > 0 {
		n = width * done / total
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func progressLine(spec queue.BatchSpec, c queue.Counts, elapsed time.Duration) string {
	pct := 0
	if spec.Hosts > 0 {
		pct = 100 * c.Done() / spec.Hosts
	}
	line := fmt.Sprintf("batch %s: %d/%d done (%d%%) ok %d, fail %d, error %d", spec.ID, c.Done(), spec.Hosts, pct,
		c[queue.StatusOK], c[queue.StatusFail], c[queue.StatusError])
	for _, st := range []queue.Status{queue.StatusWarn, queue.StatusDead, queue.StatusCancelled, queue.StatusSkipped, queue.StatusRetrying} {
		if n := c[st]; n > 0 {
			line += fmt.Sprintf(", %s %d", st, n)
		}
	}
	return line + fmt.Sprintf(", running %d, pending %d [%s]", c[queue.StatusRunning], c[queue.StatusPending], elapsed.Round(time.Second))
}

// summaryLine says how a batch ended: ok, fail and error always, the
// other final statuses (warn among them) when some host has them.
func summaryLine(s queue.Summary) string {
	line := fmt.Sprintf("%d hosts: ok %d, fail %d, error %d", s.Total, s.Counts[queue.StatusOK], s.Counts[queue.StatusFail], s.Counts[queue.StatusError])
	for _, st := range []queue.Status{queue.StatusWarn, queue.StatusDead, queue.StatusCancelled, queue.StatusSkipped} {
		if n := s.Counts[st]; n > 0 {
			line += fmt.Sprintf(", %s %d", st, n)
		}
	}
	return line
}

// failOnFlag is --fail-on, for the commands that wait for a batch.
func failOnFlag() cli.Flag {
	return &cli.StringFlag{Name: "fail-on", Value: "fail",
		Usage: "what makes the exit code 2 (with --wait for submit and retry): fail (a host ended fail, error, dead, cancelled or skipped; warnings exit 0) or warn (warnings too)"}
}

// failOnWarn reads --fail-on: whether a warning fails the command. A
// command with a --wait flag (submit, retry) refuses --fail-on without
// it: the command would exit 0 once the batch is stored, whatever it says.
func failOnWarn(c *cli.Context) (bool, error) {
	var warnFails bool
	switch v := c.String("fail-on"); v {
	case "fail":
	case "warn":
		warnFails = true
	default:
		return false, usageErr("--fail-on %q: write fail (the default: warnings exit 0) or warn (warnings exit 2)", v)
	}
	hasWait := slices.ContainsFunc(c.Command.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), "wait") })
	if hasWait && c.IsSet("fail-on") && !c.Bool("wait") {
		return false, usageErr("--fail-on %s sets the exit code of --wait, and %s without --wait exits 0 once the batch is stored: add --wait, or follow the batch later with `patrol watch BATCH --fail-on %s`",
			c.String("fail-on"), c.Command.Name, c.String("fail-on"))
	}
	return warnFails, nil
}

// finishedExit is the exit a finished batch's summary calls for: 2 when a
// host did not pass, or passed with a warning and warnings fail.
func finishedExit(sum queue.Summary, warnFails bool) error {
	if sum.Failed() || warnFails && sum.Warned() {
		return exitErr{code: exitFailedHosts}
	}
	return nil
}
