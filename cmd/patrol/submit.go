package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/internal/batchinput"
	"github.com/patrol-dev/patrol/internal/check"
	"github.com/patrol-dev/patrol/internal/inventory"
	"github.com/patrol-dev/patrol/queue"
)

func submitCommand() *cli.Command {
	return &cli.Command{
		Name:  "submit",
		Usage: "submit a batch: run one check against every host of an inventory",
		UsageText: "patrol submit -i INVENTORY --check TYPE [--param key=value]... [options]\n\n" +
			"Check types, their params (defaults in parentheses) and verdicts:\n\n" + check.Reference(),
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			outputFlag("table", "json"),
			&cli.StringFlag{Name: "batch-id", Usage: "batch ID (default: generated); resubmitting the same ID and content is a no-op"},
			&cli.BoolFlag{Name: "wait", Usage: "wait for the batch to finish; exit 0 if every host passed (warnings too, unless --fail-on warn), 2 if any did not"},
			failOnFlag(),
			&cli.BoolFlag{Name: "plan", Usage: "print the hosts, zones, shards and the etcd writes and bytes the batch would make, measured against etcd's limits; write nothing"},
		}, batchFlags()...),
		Action: submit,
	}
}

// batchFlags say what a batch runs: its inventory, check and policy.
// `patrol submit` and `patrol schedule create|update` take them.
func batchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "inventory", Aliases: []string{"i"}, Usage: "inventory: a host list (one per line), an Ansible INI, YAML or JSON inventory, or a directory of them"},
		&cli.StringFlag{Name: "limit", Aliases: []string{"l"}, Usage: "only hosts matching this Ansible pattern (groups, globs, ~regex, :&, :!, slices, @file)"},
		&cli.StringFlag{Name: "check", Usage: "check type: " + strings.Join(check.Types(), ", ")},
		&cli.StringSliceFlag{Name: "param", Aliases: []string{"p"},
			Usage: "check parameter key=value (repeatable); values are templates over {{.Host}}, {{.Address}}, {{.Port}}, {{.Vars.name}}"},
		&cli.DurationFlag{Name: "timeout", Value: queue.DefaultTimeout, Usage: "per-attempt timeout: the worker cancels the check, the scheduler revokes the claim past it"},
		&cli.IntFlag{Name: "max-attempts", Value: queue.DefaultMaxAttempts, Usage: "attempts per host before it ends dead (errors and lost workers are retried)"},
		&cli.DurationFlag{Name: "backoff", Value: queue.DefaultBackoff, Usage: "delay before the first retry; doubles each attempt, with jitter"},
		&cli.DurationFlag{Name: "max-backoff", Value: queue.DefaultMaxBackoff, Usage: "cap on the retry delay"},
		&cli.BoolFlag{Name: "retry-failures", Usage: "retry hosts that failed the check too, not only errors"},
		&cli.StringFlag{Name: "max-failures", Usage: "stop the batch once more than N (or N%) hosts failed (fail, error, dead; warnings do not count): hosts not yet started end skipped"},
		&cli.IntFlag{Name: "parallel", Usage: "run at most N of the batch's hosts at once across all workers (0: no cap)"},
		&cli.StringFlag{Name: "priority", Value: "normal", Usage: fmt.Sprintf("the batch's share of the workers while other batches run: high, normal or low, "+
			"or a number from %d to %d (low %d, normal %d, high %d); each step doubles the share, and every batch with hosts waiting gets "+
			"some: among batches of weights 2^(priority+3) summing to W, one of weight w gets w of every W hosts handed out (high 32, normal 8, low 2)",
			queue.MinPriority, queue.MaxPriority, queue.PriorityLow, queue.PriorityNormal, queue.PriorityHigh)},
	}
}

// readBatchInput reads batchFlags over base and checks them
// (batchinput.Apply, as the web API does): flags not given keep base's
// values, unless full (submit, create), where the flags' defaults apply
// and the inventory and check are required. Only when everything is valid
// does the caller touch etcd. stored, if not nil, gives the hosts a
// check's params are validated against when -i is not given.
func readBatchInput(c *cli.Context, base batchinput.Input, full bool, stored func() ([]inventory.Host, error)) (batchinput.Input, error) {
	set := func(name string) bool { return full || c.IsSet(name) }
	path := c.String("inventory")
	if full && path == "" {
		return base, usageErr("no inventory: pass -i FILE with one host per line")
	}
	var ch batchinput.Change
	if set("check") {
		ch.Check = new(c.String("check"))
	}
	if set("param") {
		params, err := parseParams(c.StringSlice("param"))
		if err != nil {
			return base, err
		}
		ch.Params = params
	}
	if set("max-attempts") {
		ch.MaxAttempts = new(c.Int("max-attempts"))
	}
	if set("timeout") {
		ch.Timeout = new(c.Duration("timeout"))
	}
	if set("backoff") {
		ch.Backoff = new(c.Duration("backoff"))
	}
	if set("max-backoff") {
		ch.MaxBackoff = new(c.Duration("max-backoff"))
	}
	if set("retry-failures") {
		ch.RetryFailures = new(c.Bool("retry-failures"))
	}
	if set("max-failures") {
		ch.MaxFailures = new(c.String("max-failures"))
	}
	if set("parallel") {
		ch.Parallel = new(c.Int("parallel"))
	}
	if set("priority") {
		priority, err := queue.ParsePriority(c.String("priority"))
		if err != nil {
			return base, usageErr("--%v", err)
		}
		ch.Priority = &priority
	}
	if path == "" && c.IsSet("limit") {
		return base, usageErr("--limit selects from an inventory: pass -i FILE with it")
	}
	if path != "" {
		inv, err := inventory.Load(path)
		if err != nil {
			return base, err
		}
		ch.Hosts = inv.Hosts()
		if pattern := c.String("limit"); pattern != "" {
			if ch.Hosts, err = inv.Select(pattern); err != nil {
				return base, usageErr("--limit %q: %v", pattern, err)
			}
		}
	}
	in, err := batchinput.Apply(base, ch, stored)
	if errors.Is(err, batchinput.ErrNoCheck) {
		return in, usageErr("no check type: pass --check with one of %s", strings.Join(check.Types(), ", "))
	}
	return in, err
}

func submit(c *cli.Context) error {
	a := appOf(c)
	if c.Args().Len() > 0 {
		return usageErr("submit takes no arguments, got %q: pass the inventory with -i FILE", c.Args().First())
	}
	out, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	warnFails, err := failOnWarn(c)
	if err != nil {
		return err
	}
	id := c.String("batch-id")
	if id != "" {
		if err := queue.ValidateBatchID(id); err != nil {
			return usageErr("--batch-id: %v", err)
		}
	}
	in, err := readBatchInput(c, batchinput.Input{}, true, nil)
	if err != nil {
		return err
	}
	typ, params, policy, priority, hosts := in.Check, in.Params, in.Policy, in.Priority, in.Hosts

	plan := queue.PlanBatch(hosts, 0)
	if c.Bool("plan") {
		return printPlan(a.stdout, out, plan, planSpace(c))
	}

	// Everything the operator gave is valid: only now touch etcd.
	q, closeQ, err := openQueue(c.Context, c)
	if err != nil {
		return err
	}
	defer closeQ()
	if err := checkSpace(c.Context, q, plan); err != nil {
		return err
	}
	if id == "" {
		id = queue.NewBatchID(time.Now())
	}
	ctx, cancel := withTimeout(c.Context, time.Minute)
	spec, existed, err := q.Submit(ctx, queue.SubmitRequest{ID: id, Check: typ, Params: params, Policy: policy, Priority: priority, Hosts: hosts})
	cancel()
	if err != nil {
		if c.Context.Err() != nil {
			return exitErr{code: exitInterrupted, msg: fmt.Sprintf("interrupted while submitting batch %s; see whether it was stored with `patrol status %s`", id, id)}
		}
		return fmt.Errorf("submit batch %s: %w", id, err)
	}
	if out == "json" {
		json.NewEncoder(a.stdout).Encode(map[string]any{"batch_id": spec.ID, "hosts": spec.Hosts, "existed": existed})
	} else {
		note := ""
		if existed {
			note = " (already submitted; nothing written)"
		}
		fmt.Fprintf(a.stdout, "%s%s\n", spec.ID, note)
	}
	if !c.Bool("wait") {
		return nil
	}
	sum, err := waitBatch(c.Context, q, spec.ID, a.stderr)
	if err != nil {
		return err
	}
	return finishedExit(sum, warnFails)
}

// parseParams turns key=value flags into a map, refusing malformed ones.
func parseParams(kvs []string) (map[string]string, error) {
	params := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, usageErr("malformed --param %q: write it as key=value, e.g. --param timeout=3s", kv)
		}
		if _, dup := params[k]; dup {
			return nil, usageErr("--param %s given twice: pass each parameter once", k)
		}
		params[k] = v
	}
	return params, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// spaceRead is etcd's space as --plan read it, or why it could not.
type spaceRead struct {
	space queue.Space
	err   error
}

// planSpace reads etcd's space for --plan, which must work without etcd:
// it gives up after a couple of seconds.
func planSpace(c *cli.Context) spaceRead {
	ctx, cancel := context.WithTimeout(c.Context, min(c.Duration("dial-timeout"), 2*time.Second))
	defer cancel()
	q, closeQ, err := openQueue(ctx, c)
	if err != nil {
		return spaceRead{err: err}
	}
	defer closeQ()
	sp, err := q.Space(ctx)
	return spaceRead{space: sp, err: err}
}

// checkSpace refuses a batch that etcd cannot take (queue.CheckFits).
func checkSpace(ctx context.Context, q *queue.Queue, plan queue.Plan) error {
	return q.CheckFits(ctx, plan)
}

func quotaText(sp queue.Space) string { return queue.QuotaText(sp) }

// printPlan shows what a submit would write.
func printPlan(w io.Writer, format string, p queue.Plan, sr spaceRead) error {
	if format == "json" {
		v := map[string]any{"plan": p}
		if sr.err == nil {
			v["etcd_space"] = sr.space
		} else {
			v["etcd_space_error"] = sr.err.Error()
		}
		return json.NewEncoder(w).Encode(v)
	}
	within := func(ok bool) string {
		if ok {
			return "within"
		}
		return "OVER"
	}
	fmt.Fprintf(w, "hosts:            %d\n", p.Hosts)
	for _, z := range sortedKeys(p.Zones) {
		fmt.Fprintf(w, "zone %-12s %d hosts over %d shards (fullest shard %d)\n", z+":", p.Zones[z], p.ShardsPerZone, p.HostsPerShard[z])
	}
	fmt.Fprintf(w, "inventory:        %d chunk(s), %s; largest %s (etcd request limit %s: %s)\n", p.InventoryChunks,
		bytesText(p.InventoryBytes), bytesText(p.LargestChunk), bytesText(p.Limits.MaxRequestBytes), within(p.LargestChunk < p.Limits.MaxRequestBytes))
	fmt.Fprintf(w, "sharding:         %d transactions of up to 122 operations in %d lane(s) (etcd limit %d per branch: within)\n",
		p.ShardTxns, p.ShardLanes, p.Limits.MaxTxnOps)
	fmt.Fprintf(w, "key writes:       about %d for the whole batch (about 3.2 per host)\n", p.KeyWrites)
	switch {
	case sr.err != nil:
		fmt.Fprintf(w, "stored until retention: about %s; at most %s while it runs (etcd's quota not read: %v; assumed %s, etcd's default: %s)\n",
			bytesText(p.StoredBytes), bytesText(p.PeakBytes), sr.err, bytesText(p.Limits.QuotaBytes), within(p.PeakBytes < p.Limits.QuotaBytes/2))
	case sr.space.Quota == 0:
		fmt.Fprintf(w, "stored until retention: about %s; at most %s while it runs (etcd reports no quota, before 3.6; assumed %s: %s)\n",
			bytesText(p.StoredBytes), bytesText(p.PeakBytes), bytesText(p.Limits.QuotaBytes), within(int64(p.PeakBytes) < int64(p.Limits.QuotaBytes)-sr.space.Size))
	default:
		fmt.Fprintf(w, "stored until retention: about %s; at most %s while it runs (etcd: %s free, database %s of a %s quota: %s)\n",
			bytesText(p.StoredBytes), bytesText(p.PeakBytes), bytesText(int(sr.space.Free())), bytesText(int(sr.space.Size)),
			bytesText(int(sr.space.Quota)), within(int64(p.PeakBytes) <= sr.space.Free()))
	}
	if sr.err == nil && sr.space.NoSpace {
		fmt.Fprintln(w, "etcd alarm NOSPACE: etcd takes no new batch now; see `patrol space`")
	}
	fmt.Fprintln(w, "nothing was written (--plan)")
	return nil
}

func bytesText(n int) string { return queue.BytesText(int64(n)) }
