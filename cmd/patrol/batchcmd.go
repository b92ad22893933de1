package main

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

// queueCall is what a queue command gets: the app, the queue, the batch ID
// (for commands that act on one), the -o format, and a context bounded by
// the command's timeout.
type queueCall struct {
	c      *cli.Context
	a      *app
	q      *queue.Queue
	batch  string
	output string
	ctx    context.Context
}

// queueCommand builds a command that reads or writes the queue: it checks
// the output format and, with args, the command's arguments (returning the
// batch ID, if it takes one) before connecting, then runs fn with a context
// bounded by timeout.
func queueCommand(name, usage, argsUsage string, formats []string, timeout time.Duration, flags []cli.Flag,
	args func(*cli.Context) (string, error), fn func(queueCall) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: argsUsage,
		Flags:     append([]cli.Flag{outputFlag(formats...)}, flags...),
		Action: func(c *cli.Context) error {
			out, err := outputFormat(c, formats...)
			if err != nil {
				return err
			}
			var batch string
			if args != nil {
				if batch, err = args(c); err != nil {
					return err
				}
			}
			q, closeQ, err := openQueue(c.Context, c)
			if err != nil {
				return err
			}
			defer closeQ()
			ctx, cancel := context.WithTimeout(c.Context, timeout)
			defer cancel()
			return fn(queueCall{c: c, a: appOf(c), q: q, batch: batch, output: out, ctx: ctx})
		},
	}
}

// batchCommand builds a command of the form `patrol NAME BATCH [flags]`.
func batchCommand(name, usage string, formats []string, timeout time.Duration, flags []cli.Flag, fn func(queueCall) error) *cli.Command {
	return queueCommand(name, usage, "BATCH", formats, timeout, flags, batchArg, fn)
}
