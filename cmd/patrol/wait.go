package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/patrol-dev/patrol/queue"
)

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// waitBatch shows a batch's progress on w until it finishes and returns
// its summary. On a terminal the progress line redraws in place; elsewhere
// a plain line is printed every few seconds. Interrupting leaves the batch
// running and exits 130.
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
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sum, done, err := q.Summary(cctx, batch)
		if err == nil && !done && time.Since(lastPrint) >= every {
			var counts queue.Counts
			var spec queue.BatchSpec
			counts, spec, err = q.Count(cctx, batch)
			if err == nil {
				line := progressLine(spec, counts, time.Since(start))
				if tty {
					fmt.Fprintf(w, "\r\033[K%s", line)
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
				msg: fmt.Sprintf("interrupted; batch %s keeps running: follow it with `patrol status %s`", batch, batch)}
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return queue.Summary{}, fmt.Errorf("follow batch %s: %w", batch, err)
		}
		if done {
			if tty {
				fmt.Fprint(w, "\r\033[K")
			}
			fmt.Fprintf(w, "batch %s finished in %s: %s\n", batch, time.Since(start).Round(time.Millisecond), summaryLine(sum))
			return sum, nil
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func progressLine(spec queue.BatchSpec, c queue.Counts, elapsed time.Duration) string {
	pct := 0
	if spec.Hosts > 0 {
		pct = 100 * c.Done() / spec.Hosts
	}
	line := fmt.Sprintf("batch %s: %d/%d done (%d%%) ok %d, fail %d, error %d", spec.ID, c.Done(), spec.Hosts, pct,
		c[queue.StatusOK], c[queue.StatusFail], c[queue.StatusError])
	for _, st := range []queue.Status{queue.StatusDead, queue.StatusCancelled, queue.StatusSkipped, queue.StatusRetrying} {
		if n := c[st]; n > 0 {
			line += fmt.Sprintf(", %s %d", st, n)
		}
	}
	return line + fmt.Sprintf(", running %d, pending %d [%s]", c[queue.StatusRunning], c[queue.StatusPending], elapsed.Round(time.Second))
}

// summaryLine says how a batch ended: ok, fail and error always, the
// other final statuses when some host has them.
func summaryLine(s queue.Summary) string {
	line := fmt.Sprintf("%d hosts: ok %d, fail %d, error %d", s.Total, s.Counts[queue.StatusOK], s.Counts[queue.StatusFail], s.Counts[queue.StatusError])
	for _, st := range []queue.Status{queue.StatusDead, queue.StatusCancelled, queue.StatusSkipped} {
		if n := s.Counts[st]; n > 0 {
			line += fmt.Sprintf(", %s %d", st, n)
		}
	}
	return line
}
