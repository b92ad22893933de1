// Command patrol runs and drives Patrol, a distributed job queue for
// checking fleets, on etcd. See `patrol --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "patrol:", msg)
		}
		os.Exit(exitCode(err))
	}
}
