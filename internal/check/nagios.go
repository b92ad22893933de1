package check

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Nagios plugin conventions, which exec and ssh follow unless a job passes
// nagios=false (see the Nagios plugin guidelines, "Plugin Return Codes"
// and "Performance data"):
//
//	exit 0  OK        ok
//	exit 1  WARNING   warn
//	exit 2  CRITICAL  fail
//	exit 3  UNKNOWN   error: the plugin could not decide, so it is retried
//	other             fail, the message saying the code is not a plugin state
//
// The first line of output, up to a "|", is the message. What follows the
// "|" on the first line, and everything after the first "|" on a later
// line (the long text comes before it), is performance data:
//
//	'label'=value[UOM];[warn];[crit];[min];[max] ...
//
// Each label becomes details "perf.<label>" (the value, a plain decimal
// number, or "U" when the plugin could not measure it) and, when given,
// "perf.<label>.unit" (s, ms, us, %, B, KB, MB, GB, TB, c or another unit),
// "perf.<label>.warn" and "perf.<label>.crit" (threshold ranges, as the
// plugin wrote them), "perf.<label>.min" and "perf.<label>.max". Labels may
// be quoted to hold spaces or "=" ('' is a quote inside one). Performance
// data that does not parse never changes the verdict: what parsed is kept,
// and the rest is in "perfdata" with a note in "perfdata_note". Labels past
// the first 64 are left out the same way, the note saying how many.

// maxPerfLabels bounds how many performance data labels a result keeps, so
// that a chatty plugin cannot grow every result record without limit.
const maxPerfLabels = 64

// pluginStates names the plugin exit codes, for messages.
var pluginStates = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// pluginStatus is the verdict for a plugin's exit code.
func pluginStatus(code int) Status {
	switch code {
	case 0:
		return StatusOK
	case 1:
		return StatusWarn
	case 3:
		return StatusError
	}
	return StatusFail
}

// exitResult judges a command that exited with code, by the plugin
// conventions when nagios is set and otherwise as exit 0 or not. what
// names the command in the message ("exec disk").
func exitResult(start time.Time, what string, code int, output string, nagios bool) Result {
	details := map[string]string{"output": output, "exit_code": strconv.Itoa(code)}
	var res Result
	switch {
	case !nagios && code == 0:
		res = result(start, StatusOK, "%s: exit 0 in %s", what, time.Since(start).Round(time.Microsecond))
	case !nagios:
		res = result(start, StatusFail, "%s: exit status %d%s", what, code, tailNote(output))
	default:
		text, perf := splitPluginOutput(output)
		switch {
		case code < 0 || code >= len(pluginStates):
			if text != "" {
				text = ": " + text
			}
			text = fmt.Sprintf("exit status %d, which is no plugin state%s", code, text)
		case text == "":
			text = fmt.Sprintf("exit %d (%s) in %s, no output", code, pluginStates[code], time.Since(start).Round(time.Microsecond))
		}
		res = result(start, pluginStatus(code), "%s: %s", what, text)
		addPerfdata(details, perf)
	}
	res.Details = details
	return res
}

// splitPluginOutput returns a plugin's message (its first line, up to a
// "|", made printable) and its performance data text (empty if none).
func splitPluginOutput(output string) (text, perf string) {
	// The tail buffer's marker says the first line was dropped: the first
	// kept line is the best message left.
	if strings.HasPrefix(output, "[patrol: first ") {
		if _, rest, ok := strings.Cut(output, "\n"); ok {
			output = rest
		}
	}
	first, rest, _ := strings.Cut(output, "\n")
	text, perf, _ = strings.Cut(first, "|")
	if _, more, ok := strings.Cut(rest, "|"); ok {
		perf += " " + more
	}
	return lastLine(text), strings.TrimSpace(perf)
}

// perfNumber is a performance data value or threshold number.
var perfNumber = regexp.MustCompile(`^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?`)

// perfRange is a threshold range: [@][start:][end], start ~ for -infinity.
var perfRange = regexp.MustCompile(`^@?(?:(?:~|[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)?:)?(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)?$`)

// addPerfdata parses perf into details; see the conventions above.
func addPerfdata(details map[string]string, perf string) {
	var bad []string
	labels, dropped := 0, 0
	for s := strings.TrimSpace(perf); s != ""; s = strings.TrimSpace(s) {
		label, value, rest, err := nextPerf(s)
		s = rest
		if labels == maxPerfLabels {
			dropped++ // said once, below, with the count
			continue
		}
		if err == nil {
			err = addPerfValue(details, label, value)
		}
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		labels++
	}
	var notes []string
	if len(bad) > 0 {
		notes = append(notes, "performance data that does not parse was left out: "+strings.Join(bad, "; "))
	}
	if dropped > 0 {
		notes = append(notes, fmt.Sprintf("more than %d labels: the %d after the first %d were left out", maxPerfLabels, dropped, maxPerfLabels))
	}
	if len(notes) > 0 {
		details["perfdata"] = perf
		details["perfdata_note"] = strings.Join(notes, "; ")
	}
}

// nextPerf cuts the first label=value item off s.
func nextPerf(s string) (label, value, rest string, err error) {
	if s[0] == '\'' {
		var b strings.Builder
		i := 1
		for ; i < len(s); i++ {
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				break
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", "", "", fmt.Errorf("%s: unterminated quoted label", snippet([]byte(s), 40))
		}
		label, s = b.String(), s[i+1:]
		if !strings.HasPrefix(s, "=") {
			item, rest, _ := cutField(s)
			return "", "", rest, fmt.Errorf("'%s'%s: no = after the label", label, item)
		}
		value, rest, _ = cutField(s[1:])
		return label, value, rest, nil
	}
	item, rest, _ := cutField(s)
	label, value, ok := strings.Cut(item, "=")
	if !ok || label == "" {
		return "", "", rest, fmt.Errorf("%s: want label=value", snippet([]byte(item), 40))
	}
	return label, value, rest, nil
}

// cutField cuts s at its first white space.
func cutField(s string) (field, rest string, found bool) {
	if i := strings.IndexAny(s, " \t\r\n"); i >= 0 {
		return s[:i], s[i:], true
	}
	return s, "", false
}

// addPerfValue parses value[UOM];warn;crit;min;max for label into details.
func addPerfValue(details map[string]string, label, value string) error {
	fields := strings.Split(value, ";")
	if len(fields) > 5 {
		return fmt.Errorf("%s=%s: more than 5 fields", label, value)
	}
	key := "perf." + label
	v, unit := fields[0], ""
	if v != "U" {
		num := perfNumber.FindString(v)
		if num == "" {
			return fmt.Errorf("%s=%s: value %q is not a number", label, value, fields[0])
		}
		v, unit = normalNumber(num), v[len(num):]
	}
	if strings.ContainsAny(unit, "0123456789;=,") {
		return fmt.Errorf("%s=%s: unit %q is not a unit of measure", label, value, unit)
	}
	out := map[string]string{key: v}
	if unit != "" {
		out[key+".unit"] = unit
	}
	for i, name := range []string{"warn", "crit", "min", "max"} {
		if i+1 >= len(fields) || fields[i+1] == "" {
			continue
		}
		f := fields[i+1]
		if i < 2 && !perfRange.MatchString(f) || i >= 2 && perfNumber.FindString(f) != f {
			return fmt.Errorf("%s=%s: %s %q does not parse", label, value, name, f)
		}
		if i >= 2 {
			f = normalNumber(f)
		}
		out[key+"."+name] = f
	}
	for k, v := range out {
		details[k] = v
	}
	return nil
}

// normalNumber writes a decimal number the way Go reads it back:
// "+.5" becomes "0.5", "1e3" stays as it is.
func normalNumber(s string) string {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
