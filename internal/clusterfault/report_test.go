//go:build linux

package clusterfault

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// figures is what one scenario measured: a row of the report.
type figures struct {
	name   string
	target targets
	ran    bool // the scenario ran to its end
	// violated is set when an invariant did not hold (the test failed).
	violated bool

	faultAt time.Duration // when the fault began, after the submit began
	batch   time.Duration // from the submit to the summary
	// stall is the longest gap between consecutive result commits;
	// stallAt when it began, after the submit.
	stall, stallAt time.Duration
	// leaderAgain is when etcd had a leader again after the fault (the
	// leader scenarios); afterLeader the longest part of a host's stay in
	// running after it.
	leaderAgain time.Time
	afterLeader time.Duration
	// longest is the longest stay of a host in running; longestAt when it
	// began, after the submit.
	longest   span
	longestAt time.Duration
	// heldAtSummary is how many groups still had a claim, running or
	// done key when the summary was written; heldFor how long after it
	// the last of them went.
	heldAtSummary int
	heldFor       time.Duration
	// leasesLost is the sum of the workers' keepalive failures while the
	// fault lasted (until a frozen or killed member came back), or over
	// the whole scenario when the fault has no end; lostAtReturn how many
	// more were lost from the member's return to the batch's end.
	leasesLost, lostAtReturn int
	// returned is when the member came back, if the scenario has one.
	returned bool
	retried  int // hosts that took more than one attempt
	zombies  int // completions rejected by the claim fence
	exited   []string
	notes    []string
}

// report renders every scenario's figures as one table, with the issue's
// targets beside them, and the NOSPACE scenario's findings below.
func report(rows []figures, nospace string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster fault suite: 3 etcd members (one process each), 2 schedulers (--session-ttl %s), 3 workers (--concurrency %s --lease-ttl %s);\n",
		sessionTTL, concurrency, leaseTTL)
	fmt.Fprintf(&b, "each scenario: a fresh cluster, %d hosts of noop sleep=%s (--timeout %s), the fault once 1/%d of the results are in.\n",
		batchHosts, batchSleep, attemptTimeout, faultAfter)
	fmt.Fprintf(&b, "Targets are issue 12's figures, printed, not asserted (timings on a shared machine); \"missed\" marks one not reached.\n"+
		"Leases lost count the workers' lost sessions while the fault lasts; those lost when the member came back are shown apart.\n\n")
	var base time.Duration
	for _, f := range rows {
		if f.name == "baseline" && f.ran {
			base = f.batch
		}
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFAULT AT\tBATCH\tVS BASELINE\tTARGET\tSTALL\tTARGET\tLEASES LOST\tTARGET\tLONGEST RUNNING\tAFTER RE-ELECTION\tTARGET\tRETRIED\tZOMBIES\tEXITED\tTARGET\tHELD AT SUMMARY\tINVARIANTS")
	for _, f := range rows {
		if !f.ran {
			// As many cells as the other rows, so that the columns align.
			fmt.Fprintf(tw, "%s\tFAILED%s\n", f.name, strings.Repeat("\t", 16))
			continue
		}
		tg := f.target
		cols := []string{f.name, "-", round(f.batch).String()}
		if f.faultAt > 0 {
			cols[1] = "+" + round(f.faultAt).String()
		}
		over := f.batch - base
		if base == 0 || f.name == "baseline" {
			cols = append(cols, "-")
		} else {
			cols = append(cols, fmt.Sprintf("%+.1fs", over.Seconds()))
		}
		cols = append(cols, target(tg.overBaseline > 0 && base > 0, over <= tg.overBaseline, fmt.Sprintf("<= +%s", tg.overBaseline)))
		cols = append(cols, fmt.Sprintf("%s at +%s", round(f.stall), round(f.stallAt)))
		cols = append(cols, target(tg.stall > 0, f.stall <= tg.stall, fmt.Sprintf("<= %s", tg.stall)))
		lost := fmt.Sprint(f.leasesLost)
		if f.lostAtReturn > 0 {
			lost += fmt.Sprintf(" (+%d at its return)", f.lostAtReturn)
		}
		cols = append(cols, lost, target(tg.noLeaseLost, f.leasesLost == 0, "0"))
		cols = append(cols, fmt.Sprintf("%s at +%s", round(f.longest.end.Sub(f.longest.start)), round(f.longestAt)))
		cols = append(cols, dash(f.afterLeader))
		cols = append(cols, target(tg.afterLeader > 0, f.afterLeader <= tg.afterLeader, fmt.Sprintf("<= %s", tg.afterLeader)))
		cols = append(cols, fmt.Sprint(f.retried), fmt.Sprint(f.zombies), fmt.Sprint(len(f.exited)))
		cols = append(cols, target(tg.noExit, len(f.exited) == 0, "0"))
		if f.heldAtSummary > 0 {
			cols = append(cols, fmt.Sprintf("%d groups, gone +%s", f.heldAtSummary, round(f.heldFor)))
		} else {
			cols = append(cols, "0")
		}
		if f.violated {
			cols = append(cols, "VIOLATED")
		} else {
			cols = append(cols, "held")
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
	b.WriteString("\n")
	for _, f := range rows {
		notes := slices.Clone(f.notes)
		switch {
		case !f.ran:
			notes = append(notes, "FAILED: see the test log above")
		case f.violated:
			notes = append(notes, "invariants VIOLATED: see the test log above")
		}
		if len(f.exited) > 0 {
			notes = append(notes, fmt.Sprintf("exited: %s", strings.Join(f.exited, ", ")))
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", f.name, strings.Join(notes, "; "))
		}
	}
	if nospace != "" {
		fmt.Fprintf(&b, "NOSPACE: %s\n", nospace)
	}
	return b.String()
}

// target renders a target column: "-" when the scenario has none.
func target(has, met bool, what string) string {
	switch {
	case !has:
		return "-"
	case met:
		return what + " met"
	default:
		return what + " missed"
	}
}

func dash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return round(d).String()
}
