package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/patrol-dev/patrol/queue"
)

// rowWriter writes result rows one at a time in an output format, so that
// `patrol results` can stream a batch of any size in bounded memory.
type rowWriter interface {
	write(queue.HostResult) error
	close() error // ends the output (and flushes it)
}

// tableFlushEvery is how many table rows are aligned together: a table
// streamed from a large batch is aligned per block of this many.
const tableFlushEvery = 1000

func newRowWriter(format string, out io.Writer) rowWriter {
	bw := bufio.NewWriter(out)
	switch format {
	case "json":
		return &jsonRows{w: bw}
	case "yaml":
		return &yamlRows{w: bw}
	case "csv":
		cw := csv.NewWriter(bw)
		cw.Write([]string{"host", "status", "attempts", "round", "duration_ms", "worker", "finished_at", "message"})
		return &csvRows{w: bw, cw: cw}
	case "wide":
		t := &tableRows{w: bw, line: wideLine, header: "HOST\tSTATUS\tATTEMPTS\tROUND\tDURATION\tWORKER\tFINISHED\tHISTORY\tMESSAGE"}
		t.start()
		return t
	}
	t := &tableRows{w: bw, line: tableLine, header: "HOST\tSTATUS\tATTEMPTS\tDURATION\tWORKER\tMESSAGE"}
	t.start()
	return t
}

// jsonRows writes a JSON array, as json.Encoder with a two-space indent
// writes a slice.
type jsonRows struct {
	w *bufio.Writer
	n int
}

func (j *jsonRows) write(r queue.HostResult) error {
	b, err := json.MarshalIndent(r, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if j.n == 0 {
		sep = "[\n  "
	}
	j.n++
	j.w.WriteString(sep)
	_, err = j.w.Write(b)
	return err
}

func (j *jsonRows) close() error {
	if j.n == 0 {
		j.w.WriteString("[]\n")
	} else {
		j.w.WriteString("\n]\n")
	}
	return j.w.Flush()
}

// yamlRows writes a YAML sequence, one item per row.
type yamlRows struct {
	w *bufio.Writer
	n int
}

func (y *yamlRows) write(r queue.HostResult) error {
	j, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b, err := yaml.JSONToYAML(j)
	if err != nil {
		return err
	}
	y.n++
	for i, line := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		if i == 0 {
			y.w.WriteString("- ")
		} else {
			y.w.WriteString("  ")
		}
		y.w.Write(line)
		y.w.WriteByte('\n')
	}
	return nil
}

func (y *yamlRows) close() error {
	if y.n == 0 {
		y.w.WriteString("[]\n")
	}
	return y.w.Flush()
}

type csvRows struct {
	w  *bufio.Writer
	cw *csv.Writer
}

func (c *csvRows) write(r queue.HostResult) error {
	finished := ""
	if !r.FinishedAt.IsZero() {
		finished = r.FinishedAt.Format(time.RFC3339)
	}
	return c.cw.Write([]string{r.Host, string(r.Status), strconv.Itoa(r.Attempts), strconv.Itoa(r.Round),
		strconv.FormatInt(r.DurationMS, 10), r.Worker, finished, r.Message})
}

func (c *csvRows) close() error {
	c.cw.Flush()
	if err := c.cw.Error(); err != nil {
		return err
	}
	return c.w.Flush()
}

// tableRows aligns rows in columns, a block of tableFlushEvery at a time.
type tableRows struct {
	w      *bufio.Writer
	tw     *tabwriter.Writer
	header string
	line   func(queue.HostResult) string
	n      int
}

func (t *tableRows) start() {
	t.tw = tabwriter.NewWriter(t.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t.tw, t.header)
}

func (t *tableRows) write(r queue.HostResult) error {
	if t.n > 0 && t.n%tableFlushEvery == 0 {
		t.tw.Flush()
	}
	t.n++
	_, err := fmt.Fprintln(t.tw, t.line(r))
	return err
}

func (t *tableRows) close() error {
	t.tw.Flush()
	return t.w.Flush()
}

func tableLine(r queue.HostResult) string {
	dur := "-"
	if r.Status != queue.StatusPending && r.Status != queue.StatusRunning {
		dur = (time.Duration(r.DurationMS) * time.Millisecond).String()
	}
	return fmt.Sprintf("%s\t%s\t%d\t%s\t%s\t%s", r.Host, r.Status, r.Attempts, dur, dash(r.Worker), oneLine(r.Message))
}

func wideLine(r queue.HostResult) string {
	finished := "-"
	if !r.FinishedAt.IsZero() {
		finished = r.FinishedAt.Local().Format(time.DateTime)
	}
	var hist []string
	for _, a := range r.History {
		hist = append(hist, fmt.Sprintf("%d:%s", a.Attempt, a.Status))
	}
	return fmt.Sprintf("%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s", r.Host, r.Status, r.Attempts, r.Round,
		(time.Duration(r.DurationMS) * time.Millisecond).String(), dash(r.Worker), finished, dash(strings.Join(hist, ",")), oneLine(r.Message))
}

// printResults writes rows as `patrol results` prints its table.
func printResults(out io.Writer, rows []queue.HostResult) error {
	w := newRowWriter("table", out)
	for _, r := range rows {
		if err := w.write(r); err != nil {
			return err
		}
	}
	return w.close()
}

// streamResults writes a batch's rows as they are read: its committed
// results a page at a time, merged in task order with its running and
// retrying hosts. Pending hosts are not listed; a note on stderr says how
// many there are. With --limit it stops after that many rows and prints
// the command for the next page.
func streamResults(b queueCall, spec queue.BatchSpec, want map[queue.Status]bool, limit int) error {
	after := ""
	if h := b.c.String("after"); h != "" {
		after = queue.TaskID(h)
	}
	prog, bad, err := b.q.InProgress(b.ctx, b.batch)
	if err != nil {
		return err
	}
	i := 0
	for i < len(prog) && after != "" && prog[i].Task <= after {
		i++
	}
	w := newRowWriter(b.output, b.a.stdout)
	var (
		seen, written int
		last          string
		full          bool // stopped at --limit with rows left
		werr          error
	)
	emit := func(r queue.HostResult) bool {
		seen++
		if len(want) > 0 && !want[r.Status] {
			return true
		}
		if limit > 0 && written == limit {
			full = true
			return false
		}
		if werr = w.write(r); werr != nil {
			return false
		}
		written++
		last = r.Host
		return true
	}
	more := true
	badResults, err := b.q.EachResult(b.ctx, b.batch, after, func(r queue.HostResult) bool {
		for ; i < len(prog) && prog[i].Task < r.Task; i++ {
			if !emit(prog[i]) {
				return false
			}
		}
		if i < len(prog) && prog[i].Task == r.Task {
			i++ // committed since it was read as running: the result stands
		}
		more = emit(r)
		return more
	})
	for ; more && werr == nil && !full && i < len(prog); i++ {
		more = emit(prog[i])
	}
	if cerr := w.close(); werr == nil {
		werr = cerr
	}
	for _, v := range append(bad, badResults...) {
		b.a.log.Error().Str("key", v.Key()).Err(v.Err).Msg("malformed value; shown as an error row")
	}
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if !full && after == "" && seen < spec.Hosts {
		if _, err := b.q.LoadBatch(b.ctx, b.batch); errors.Is(err, queue.ErrBatchNotFound) {
			return fmt.Errorf("batch %s was deleted (by retention or `patrol delete`) while its results were listed: the output has %d of its %d hosts", b.batch, seen, spec.Hosts)
		}
	}
	if full {
		fmt.Fprintf(b.a.stderr, "more rows: patrol results %s --after %s --limit %d\n", b.batch, last, limit)
	} else if after == "" && seen < spec.Hosts {
		fmt.Fprintf(b.a.stderr, "%d hosts are pending (no result, not running) and not listed: a batch of more than %d hosts, or a page, lists only hosts with a result, running or retrying; `patrol status %s` counts them\n",
			spec.Hosts-seen, streamAbove, b.batch)
	}
	return nil
}
