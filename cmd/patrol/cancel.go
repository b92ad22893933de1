package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

func cancelCommand() *cli.Command {
	return batchCommand("cancel", "cancel a running batch: pending hosts end cancelled, running checks are aborted; results so far stay",
		[]string{"table", "json"}, 30*time.Second, nil, func(b queueCall) error {
			cancelled, err := b.q.Cancel(b.ctx, b.batch)
			if queue.IsNoSpace(err) {
				return cancelWithoutSpace(b)
			}
			if err != nil {
				return notFound(b.batch, err)
			}
			if b.output == "json" {
				return json.NewEncoder(b.a.stdout).Encode(map[string]any{"batch_id": b.batch, "cancelled": cancelled})
			}
			if !cancelled {
				fmt.Fprintf(b.a.stdout, "batch %s had already finished; nothing to cancel\n", b.batch)
				return nil
			}
			fmt.Fprintf(b.a.stdout, "batch %s: cancel requested; follow it with `patrol status %s`\n", b.batch, b.batch)
			return nil
		})
}

// cancelWithoutSpace stops a batch while etcd is out of space: etcd takes
// no write, so the cancel cannot be recorded, but it takes deletes, so the
// batch's queued tasks are removed: nothing more of it runs, and their
// space is freed.
func cancelWithoutSpace(b queueCall) error {
	removed, err := b.q.RemoveQueued(b.ctx, b.batch)
	if err != nil {
		return fmt.Errorf("etcd is out of space (NOSPACE alarm) and refused the cancel; removing batch %s's queued tasks failed too: %w", b.batch, notFound(b.batch, err))
	}
	if b.output == "json" {
		return json.NewEncoder(b.a.stdout).Encode(map[string]any{"batch_id": b.batch, "cancelled": false, "queued_tasks_removed": removed, "etcd_out_of_space": true})
	}
	fmt.Fprintf(b.a.stdout, "etcd is out of space (NOSPACE alarm): it takes deletes only, so the cancel could not be recorded.\n"+
		"Removed batch %s's %d queued tasks instead: nothing more of it starts, and their space is free once etcd is compacted.\n"+
		"Next: free more space if needed (`patrol delete BATCH` deletes a batch whole), then `patrol space --reclaim`;\n"+
		"once etcd takes writes again, run `patrol cancel %s` again to end the rest of it cancelled.\n", b.batch, removed, b.batch)
	return nil
}

func deleteCommand() *cli.Command {
	return batchCommand("delete", "delete a batch and everything it keeps in etcd (inventory, results); works while etcd is out of space",
		[]string{"table", "json"}, time.Minute, []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "delete a batch that is still running (what its running checks commit afterwards may need deleting again)"},
		}, func(b queueCall) error {
			n, err := b.q.DeleteBatch(b.ctx, b.batch, b.c.Bool("force"))
			if err != nil {
				if errors.Is(err, queue.ErrBatchActive) {
					return fmt.Errorf("batch %s is still running: `patrol cancel %s` first, or pass --force to delete it as it runs", b.batch, b.batch)
				}
				return notFound(b.batch, err)
			}
			if n == 0 {
				return notFound(b.batch, queue.ErrBatchNotFound)
			}
			if b.output == "json" {
				return json.NewEncoder(b.a.stdout).Encode(map[string]any{"batch_id": b.batch, "keys_deleted": n})
			}
			fmt.Fprintf(b.a.stdout, "batch %s deleted (%d keys); etcd frees their space once compacted: `patrol space --reclaim`\n", b.batch, n)
			return nil
		})
}
