package check

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// execCheck runs a program from the worker's allowlist and passes when it
// exits 0. The job names the program; the worker decides what the name runs.
//
// Params:
//
//	name     the command's name in the worker's allowlist (Options.Exec,
//	         the worker's --allow-exec NAME=ARGV); required
//	args     words appended to the allowlisted argv, separated by spaces.
//	         Each word is a template rendered into exactly one argument, so
//	         a var holding spaces stays one argument. No shell is involved:
//	         quotes, globs, $VARS and ; reach the program as they are
//	timeout  duration; default 30s
//	nagios   true (default): judge the exit code and output as a Nagios
//	         plugin's; false: exit 0 passes, anything else fails
//
// The program's environment is the worker's, less the worker's own
// PATROL_* variables, plus the host's:
//
//	PATROL_HOST        the host's name as written in the inventory
//	PATROL_ADDRESS     the address, without port or brackets
//	PATROL_PORT        the inventory port, 0 if none
//	PATROL_VAR_<NAME>  each inventory var; NAME upper-cased, every byte
//	                   other than A-Z and 0-9 made _ (if two vars map to
//	                   one name, the later in sorted order wins)
//
// Stdin is /dev/null; stdout and stderr go, interleaved, to one buffer that
// keeps the last Options.OutputCap bytes.
//
// The program runs in its own process group. When it exits, times out or
// is cancelled, the whole group is killed with SIGKILL: a background child
// does not outlive the check. A process that leaves the group (setsid,
// setpgid, a double-forking daemon) escapes this.
//
// By default the program is judged as a Nagios plugin (see nagios.go):
// exit 0 ok, 1 warn, 2 fail, 3 error (retried), any other exit fail; the
// first line of output is the message, and performance data after a "|"
// becomes details. With nagios=false, exit 0 is ok and any other exit a
// fail whose message ends with the output's last line. Either way, death
// by a signal the check did not send is a fail, and a name missing from
// the allowlist, a program that cannot start, and a timeout are errors.
//
// Details: "output"; "exit_code" when the program exited, "signal" when a
// signal killed it; as a plugin, "perf.<label>..." for its performance data.
type execCheck struct {
	name    string
	args    []*template.Template
	timeout time.Duration
	nagios  bool
	allow   map[string][]string
	cap     int
}

func newExec(p params, o Options) (Check, error) {
	name, err := p.required("name", "the name of a command in the workers' --allow-exec list")
	if err != nil {
		return nil, err
	}
	args, err := p.words("args")
	if err != nil {
		return nil, err
	}
	timeout, err := p.duration("timeout", 30*time.Second, false)
	if err != nil {
		return nil, err
	}
	nagios, err := p.boolDefault("nagios", true)
	if err != nil {
		return nil, err
	}
	return &execCheck{name: name, args: args, timeout: timeout, nagios: nagios, allow: o.Exec, cap: o.OutputCap}, nil
}

// target renders the args, so Validate finds a var missing on some host.
func (c *execCheck) target(h inventory.Host) (string, error) {
	args, err := renderWords(c.args, h)
	return strings.Join(args, " "), err
}

func (c *execCheck) Run(ctx context.Context, h inventory.Host) (res Result) {
	start := time.Now()
	defer recoverResult(&res, start)

	if ctx.Err() != nil {
		return result(start, StatusError, "exec %s: cancelled", c.name)
	}
	argv, ok := c.allow[c.name]
	if !ok {
		return result(start, StatusError,
			"exec command %q is not in this worker's allowlist; add --allow-exec %s=/path/to/program to the worker, or run the job where it is allowed",
			c.name, c.name)
	}
	if len(argv) == 0 || argv[0] == "" {
		return result(start, StatusError, "exec command %q has an empty argv in this worker's allowlist; fix its --allow-exec", c.name)
	}
	args, err := renderWords(c.args, h)
	if err != nil {
		return result(start, StatusError, "%v", err)
	}

	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out := newTailBuffer(c.cap)
	cmd := exec.Command(argv[0], append(slices.Clip(argv[1:]), args...)...)
	cmd.Env = hostEnv(h)
	state, killed, err := runGroup(runCtx, cmd, out)
	if err != nil {
		return result(start, StatusError, "exec %s: cannot start %s: %s", c.name, argv[0], startError(err))
	}
	if state == nil {
		return result(start, StatusError, "exec %s: lost track of the process", c.name)
	}
	return c.judge(ctx, start, state, killed, out.String())
}

// judge turns how the program ended into a Result.
func (c *execCheck) judge(ctx context.Context, start time.Time, state *os.ProcessState, killed bool, output string) Result {
	details := map[string]string{"output": output}
	var res Result
	ws, _ := state.Sys().(syscall.WaitStatus)
	switch {
	case killed && errors.Is(ctx.Err(), context.Canceled):
		res = result(start, StatusError, "exec %s: cancelled; process group killed", c.name)
	case killed:
		res = result(start, StatusError, "exec %s: timed out after %s; process group killed",
			c.name, time.Since(start).Round(time.Millisecond))
	case ws.Signaled():
		details["signal"] = ws.Signal().String()
		res = result(start, StatusFail, "exec %s: killed by signal %s%s", c.name, ws.Signal(), tailNote(output))
	default:
		return exitResult(start, "exec "+c.name, state.ExitCode(), output, c.nagios)
	}
	res.Details = details
	return res
}

// tailNote is ": " and the output's last line, or "" when there was no output.
func tailNote(output string) string {
	if l := lastLine(output); l != "" {
		return ": " + l
	}
	return ""
}

// startError says why a program could not start, without repeating its path.
func startError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err.Error()
	}
	return err.Error()
}

// hostEnv is the environment an exec check's program runs with.
func hostEnv(h inventory.Host) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PATROL_") })
	env = append(env,
		"PATROL_HOST="+h.Name,
		"PATROL_ADDRESS="+h.Address,
		"PATROL_PORT="+strconv.Itoa(h.Port))
	for _, k := range slices.Sorted(maps.Keys(h.Vars)) {
		env = append(env, "PATROL_VAR_"+envName(k)+"="+h.Vars[k])
	}
	return env // exec.Cmd keeps the last of duplicate keys
}

// envName upper-cases name and makes every byte other than A-Z and 0-9 an _.
func envName(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
