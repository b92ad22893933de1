package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/patrol-dev/patrol/queue"
)

// disarmBelow is how full etcd may be for --reclaim to disarm its NOSPACE
// alarm: any fuller and the next writes would raise it again at once.
const disarmBelow = 0.9

func spaceCommand() *cli.Command {
	return queueCommand("space", "show etcd's database size, quota and alarms; --reclaim compacts, defragments and disarms NOSPACE",
		"", []string{"table", "json"}, 10*time.Minute, []cli.Flag{
			&cli.BoolFlag{Name: "reclaim", Usage: "compact etcd's history, defragment each member (the leader last) and, once below 90% of the quota, disarm the NOSPACE alarm"},
		}, nil, func(b queueCall) error {
			before, err := b.q.Space(b.ctx)
			if err != nil {
				return fmt.Errorf("read etcd's space: %w", err)
			}
			if !b.c.Bool("reclaim") {
				if b.output == "json" {
					return json.NewEncoder(b.a.stdout).Encode(before)
				}
				printSpace(b.a.stdout, before)
				return nil
			}
			after, steps, err := reclaim(b.ctx, b.q, before)
			if b.output == "json" {
				json.NewEncoder(b.a.stdout).Encode(map[string]any{"before": before, "after": after, "steps": steps})
			} else {
				fmt.Fprintln(b.a.stdout, "before:")
				printSpace(b.a.stdout, before)
				for _, s := range steps {
					fmt.Fprintln(b.a.stdout, s)
				}
				fmt.Fprintln(b.a.stdout, "after:")
				printSpace(b.a.stdout, after)
			}
			return err
		})
}

// warnNoSpace tells the user on stderr when etcd's NOSPACE alarm is
// raised, since nothing moves then, and reports whether it is.
func warnNoSpace(b queueCall) bool {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	sp, err := b.q.Space(ctx)
	if err != nil || !sp.NoSpace {
		return false
	}
	fmt.Fprintf(b.a.stderr, "warning: etcd is out of space (NOSPACE alarm: database %s of a %s quota): it takes no write, so no task starts or finishes. "+
		"Free space (`patrol delete BATCH`, `patrol cancel BATCH`), then `patrol space --reclaim`; see `patrol space`\n",
		bytesText(int(sp.Size)), quotaText(sp))
	return true
}

// printSpace shows s for a human.
func printSpace(w io.Writer, s queue.Space) {
	if s.Quota > 0 {
		fmt.Fprintf(w, "  database %s (in use %s) of a %s quota: %s free", bytesText(int(s.Size)), bytesText(int(s.InUse)),
			bytesText(int(s.Quota)), bytesText(int(s.Free())))
	} else {
		fmt.Fprintf(w, "  database %s (in use %s); quota not reported by this etcd (before 3.6): 2.0 GiB unless --quota-backend-bytes says otherwise",
			bytesText(int(s.Size)), bytesText(int(s.InUse)))
	}
	if s.Size > s.InUse {
		fmt.Fprintf(w, "; defragmenting frees %s", bytesText(int(s.Size-s.InUse)))
	}
	fmt.Fprintln(w)
	if s.NoSpace {
		fmt.Fprintln(w, "  alarm NOSPACE: etcd takes reads and deletes only. Free space (`patrol delete BATCH`, or `patrol cancel BATCH`,"+
			" which removes its queued tasks), then `patrol space --reclaim`")
	}
	for _, a := range s.Alarms {
		if a != etcdserverpb.AlarmType_NOSPACE.String() {
			fmt.Fprintf(w, "  alarm %s: see etcd's documentation; Patrol cannot clear it\n", a)
		}
	}
}

// reclaim compacts etcd to its current revision, defragments every
// member (followers first: a member blocks while it defragments), and
// disarms NOSPACE once below disarmBelow of the quota. It returns the
// space after and what it did.
func reclaim(ctx context.Context, q *queue.Queue, before queue.Space) (queue.Space, []string, error) {
	cli := q.Client()
	var steps []string
	resp, err := cli.Get(ctx, q.Keys().Wake())
	if err != nil {
		return before, steps, fmt.Errorf("read etcd's revision: %w", err)
	}
	rev := resp.Header.Revision
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil && !strings.Contains(err.Error(), "required revision has been compacted") {
		return before, steps, fmt.Errorf("compact etcd to revision %d: %w", rev, err)
	}
	steps = append(steps, fmt.Sprintf("compacted history up to revision %d", rev))
	var leader string
	var order []string
	for _, ep := range cli.Endpoints() {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			steps = append(steps, fmt.Sprintf("skipped %s: %v", ep, err))
			continue
		}
		if st.Leader == st.Header.MemberId {
			leader = ep
			continue
		}
		order = append(order, ep)
	}
	if leader != "" {
		order = append(order, leader)
	}
	for _, ep := range order {
		start := time.Now()
		if _, err := cli.Defragment(ctx, ep); err != nil {
			return before, steps, fmt.Errorf("defragment %s: %w", ep, err)
		}
		steps = append(steps, fmt.Sprintf("defragmented %s in %s", ep, time.Since(start).Round(time.Millisecond)))
	}
	after, err := q.Space(ctx)
	if err != nil {
		return before, steps, err
	}
	if !after.NoSpace {
		return after, steps, nil
	}
	if after.Quota > 0 && float64(after.Size) >= disarmBelow*float64(after.Quota) {
		return after, steps, fmt.Errorf("etcd holds %s of its %s quota even compacted and defragmented: the data is live. "+
			"Delete batches (`patrol batches`, `patrol delete BATCH`) and reclaim again, or raise --quota-backend-bytes on every member; "+
			"the NOSPACE alarm stays until then", bytesText(int(after.Size)), bytesText(int(after.Quota)))
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		return after, steps, fmt.Errorf("list etcd's alarms: %w", err)
	}
	for _, a := range alarms.Alarms {
		if a.Alarm != etcdserverpb.AlarmType_NOSPACE {
			continue
		}
		if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			return after, steps, fmt.Errorf("disarm NOSPACE on member %x: %w", a.MemberID, err)
		}
		steps = append(steps, fmt.Sprintf("disarmed NOSPACE on member %x", a.MemberID))
	}
	after, err = q.Space(ctx)
	return after, steps, err
}
