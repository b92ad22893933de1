package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

func leaderCommand() *cli.Command {
	return queueCommand("leader", "show the elected scheduler: its ID, since when, and its election revision (exit 1 if none)", "",
		[]string{"table", "json"}, 10*time.Second, nil, nil, func(b queueCall) error {
			l, ok, err := b.q.CurrentLeader(b.ctx)
			if err != nil {
				return fmt.Errorf("read leader: %w", err)
			}
			if !ok {
				return fmt.Errorf("no scheduler is leading under %s: start one with `patrol scheduler` (or `patrol dev`)", b.q.Keys().Prefix())
			}
			if b.output == "json" {
				return json.NewEncoder(b.a.stdout).Encode(l)
			}
			fmt.Fprintf(b.a.stdout, "leader:        %s\nsince:         %s (%s)\nelection rev:  %d\n",
				l.ID, l.Since.Local().Format(time.DateTime), time.Since(l.Since).Round(time.Second), l.Rev)
			return nil
		})
}
