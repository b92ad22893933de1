package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

func leaderCommand() *cli.Command {
	return &cli.Command{
		Name:  "leader",
		Usage: "show the elected scheduler: its ID, since when, and its election revision (exit 1 if none)",
		Flags: []cli.Flag{outputFlag()},
		Action: func(c *cli.Context) error {
			a := appOf(c)
			out, err := outputFormat(c, "table", "json")
			if err != nil {
				return err
			}
			q, closeQ, err := openQueue(c.Context, c)
			if err != nil {
				return err
			}
			defer closeQ()
			ctx, cancel := withTimeout(c.Context, 10*time.Second)
			defer cancel()
			l, ok, err := q.CurrentLeader(ctx)
			if err != nil {
				return fmt.Errorf("read leader: %w", err)
			}
			if !ok {
				return fmt.Errorf("no scheduler is leading under %s: start one with `patrol scheduler` (or `patrol dev`)", q.Keys().Prefix())
			}
			if out == "json" {
				return json.NewEncoder(a.stdout).Encode(l)
			}
			fmt.Fprintf(a.stdout, "leader:        %s\nsince:         %s (%s)\nelection rev:  %d\n",
				l.ID, l.Since.Local().Format(time.DateTime), time.Since(l.Since).Round(time.Second), l.Rev)
			return nil
		},
	}
}
