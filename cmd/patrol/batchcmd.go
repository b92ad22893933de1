package main

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/queue"
)

// batchCall is what a command that acts on one batch gets: the app, the
// queue, the batch ID, the -o format, and a context bounded by timeout.
type batchCall struct {
	c      *cli.Context
	a      *app
	q      *queue.Queue
	batch  string
	output string
	ctx    context.Context
}

// batchCommand builds a command of the form `patrol NAME BATCH [flags]`:
// it checks the output format and the batch argument before connecting,
// then runs fn.
func batchCommand(name, usage string, formats []string, timeout time.Duration, flags []cli.Flag, fn func(batchCall) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "BATCH",
		Flags:     append([]cli.Flag{outputFlag()}, flags...),
		Action: func(c *cli.Context) error {
			out, err := outputFormat(c, formats...)
			if err != nil {
				return err
			}
			batch, err := batchArg(c)
			if err != nil {
				return err
			}
			q, closeQ, err := openQueue(c.Context, c)
			if err != nil {
				return err
			}
			defer closeQ()
			ctx, cancel := context.WithTimeout(c.Context, timeout)
			defer cancel()
			return fn(batchCall{c: c, a: appOf(c), q: q, batch: batch, output: out, ctx: ctx})
		},
	}
}
