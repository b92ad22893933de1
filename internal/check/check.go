package check

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

var (
	// ErrUnknownType means New was given a check type it does not know.
	ErrUnknownType = errors.New("check: unknown type")
	// ErrBadParam means a param is unknown to the check type or its value is malformed.
	ErrBadParam = errors.New("check: bad param")
	// ErrNoPort means a check needs a port and neither the host nor the params give one.
	ErrNoPort = errors.New("check: host has no port")
	// ErrSSHKey means a key file in Options.SSHKeys cannot be read or used.
	ErrSSHKey = errors.New("check: unusable ssh key")
)

// Status is the outcome of one check against one host.
type Status string

const (
	// StatusOK means the host passed the check.
	StatusOK Status = "ok"
	// StatusWarn means the host passed, but near a threshold: a
	// certificate close to expiry, a Nagios plugin's WARNING (exit 1),
	// packet loss above warn_loss. It is final: it is never retried.
	StatusWarn Status = "warn"
	// StatusFail means the check ran and the host failed it (port closed or
	// refused, unexpected HTTP status).
	StatusFail Status = "fail"
	// StatusError means the check could not decide (timeout, DNS failure,
	// param that does not render for the host, cancellation, internal fault).
	StatusError Status = "error"
)

// Result is what one run of a check reports.
type Result struct {
	Status   Status
	Message  string        // one line, human readable, e.g. "connect 127.0.0.1:8081: connection refused"
	Duration time.Duration // measured by the check, from the start of Run to its end
	// Details holds what the check measured or captured, by name: http
	// "status_code" and "ttfb_ms", exec and ssh "exit_code" and "output".
	// Each check's documentation lists its keys. Nil when there are none.
	Details map[string]string
}

// Check runs against one host at a time.
type Check interface {
	Run(ctx context.Context, h inventory.Host) Result
}

// HostError reports why a check cannot run against one host. Validate
// returns it, and Run reports its text as a StatusError result.
type HostError struct {
	Host  string // the host's Name, as written in the inventory
	Param string // the param at fault, e.g. "port" or "url"
	Err   error  // ErrNoPort, or why the param does not render for this host
}

func (e *HostError) Error() string {
	if e.Err == ErrNoPort {
		return fmt.Sprintf("host %s has no port: write it as host:port in the inventory or pass --param %s=N", e.Host, e.Param)
	}
	return fmt.Sprintf("host %s: param %s: %v", e.Host, e.Param, e.Err)
}

func (e *HostError) Unwrap() error { return e.Err }

// Options is what the worker running a check brings to it: what a job's
// params must not choose, such as which programs may run and with which
// keys. The zero value allows no exec or ssh command.
type Options struct {
	// Exec is the worker's allowlist for exec checks: command name ->
	// argv, e.g. "disk" -> {"/usr/lib/nagios/plugins/check_disk", "-w", "20%"}.
	// A job picks one with --param name=disk.
	Exec map[string][]string
	// SSH is the worker's allowlist for ssh checks: command name -> the
	// command line the host's shell runs, e.g. "root-fs" -> "df -h /".
	SSH map[string]string
	// SSHKeys are private key files (OpenSSH, PEM or PKCS#8, without a
	// passphrase). The SSH agent at $SSH_AUTH_SOCK, if set, is tried after them.
	SSHKeys []string
	// KnownHosts is the known_hosts file that host keys are checked
	// against, and that host_key_check=accept-new appends to. Default
	// ~/.ssh/known_hosts.
	KnownHosts string
	// SSHUser is the remote user for hosts whose inventory line sets
	// neither ansible_user nor user. Default: the user running the worker.
	SSHUser string
	// OutputCap is how many bytes of an exec or ssh command's output
	// (stdout and stderr, interleaved) are kept; the rest is dropped from
	// the front, so the tail survives. Default 64 KiB.
	OutputCap int
}

// DefaultOutputCap is Options.OutputCap's default.
const DefaultOutputCap = 64 << 10

// kind describes one check type.
type kind struct {
	params []string // the param names it accepts, sorted
	build  func(p params, o Options) (Check, error)
	// doc is the params with their defaults, then what each verdict means,
	// for Reference; the check type's comment has the full story.
	doc [2]string
}

var kinds = map[string]kind{
	"dns": {params: []string{"expect", "name", "server", "timeout", "type"}, build: newDNS, doc: [2]string{
		"name (the host's address), type (A; AAAA, CNAME, MX, TXT, SRV), server (host:port; the nameserver lines of /etc/resolv.conf: no search domains, no /etc/hosts), expect (a comma-separated exact set, or /regexp/), timeout (5s)",
		"ok: answers (matching expect); fail: NXDOMAIN, no record of the type, answers that do not match; error: SERVFAIL, REFUSED, timeout, a server that cannot be reached (said so, not a timeout)"}},
	"exec": {params: []string{"args", "name", "nagios", "timeout"}, build: newExec, doc: [2]string{
		"name (a command in the worker's --allow-exec), args (words, each a template), nagios (true), timeout (30s)",
		"as a Nagios plugin: exit 0 ok, 1 warn, 2 or other fail, 3 error; nagios=false: exit 0 ok, other fail; error: not allowed, cannot start, timeout"}},
	"http": {params: []string{"body", "ca", "header", "insecure", "max_redirects", "method", "status", "timeout", "url"}, build: newHTTP, doc: [2]string{
		"url (http://ADDRESS[:PORT]/), status (200), method (GET), body (regexp), header, insecure (false), ca (a file on the worker), max_redirects (10), timeout (10s)",
		"ok: expected status (and body); fail: other status, refused, bad TLS; error: timeout, DNS failure"}},
	"icmp": {params: []string{"count", "fail_loss", "fail_rtt", "interval", "timeout", "warn_loss", "warn_rtt"}, build: newICMP, doc: [2]string{
		"count (3), interval (200ms), timeout (3s; at least (count-1) x interval + 1s), warn_loss (20%), fail_loss (100%), warn_rtt, fail_rtt (none)",
		"ok: under the thresholds; warn: loss or average RTT at a warn threshold; fail: at a fail threshold; error: no ICMP socket allowed, DNS failure, the job's --timeout ending the run"}},
	"noop": {params: []string{"fail", "sleep", "warn"}, build: newNoop, doc: [2]string{
		"sleep (0), fail (false), warn (false)", "for tests: ok, or fail or warn as asked"}},
	"ssh": {params: []string{"args", "connect_timeout", "host_key_check", "nagios", "name", "port", "timeout"}, build: newSSH, doc: [2]string{
		"name (a command in the worker's --allow-ssh), args, port (22), host_key_check (strict; accept-new), nagios (true), connect_timeout (10s), timeout (30s)",
		"as exec; fail: refused; error: cannot log in, host key unknown or changed, timeout"}},
	"tcp": {params: []string{"expect", "port", "send", "timeout"}, build: newTCP, doc: [2]string{
		"port (the host's), timeout (5s), send, expect (regexp)",
		"ok: connected (and the reply matched); fail: refused, reset, no match; error: timeout, DNS failure"}},
	"tls": {params: []string{"ca", "fail_days", "insecure", "port", "server_name", "timeout", "warn_days"}, build: newTLS, doc: [2]string{
		"port (the host's, else 443), server_name (the host's address), warn_days (30), fail_days (7), insecure (false), ca (a file on the worker), timeout (10s)",
		"ok: verifies, warn_days or more left; warn: fewer left; fail: fewer than fail_days, expired, chain or name does not verify, refused; error: timeout"}},
}

// Reference describes every check type, its params with their defaults
// and its verdicts, for the CLI's help.
func Reference() string {
	var b strings.Builder
	for _, name := range Types() {
		fmt.Fprintf(&b, "%s\n  params: %s\n  %s\n", name, kinds[name].doc[0], kinds[name].doc[1])
	}
	return b.String()
}

// Types returns the known check type names, sorted.
func Types() []string { return slices.Sorted(maps.Keys(kinds)) }

// New validates params for check type typ and returns a ready Check. An
// unknown type wraps ErrUnknownType; an unknown param, a malformed value or a
// template syntax error wraps ErrBadParam and names the param.
//
// New is NewWith with zero Options: exec and ssh checks it builds report
// every command name as missing from the allowlist when they run.
func New(typ string, params map[string]string) (Check, error) {
	return NewWith(typ, params, Options{})
}

// NewWith is New for a worker: opts carries the worker's allowlists, keys
// and limits. Only an ssh check reads its key files here, so an unusable
// key fails the build (wrapping ErrSSHKey) rather than every host.
func NewWith(typ string, params map[string]string, opts Options) (Check, error) {
	k, ok := kinds[typ]
	if !ok {
		return nil, fmt.Errorf("%w %q; known types: %s", ErrUnknownType, typ, strings.Join(Types(), ", "))
	}
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if !slices.Contains(k.params, name) {
			return nil, fmt.Errorf("%w: %s check has no param %q; known params: %s",
				ErrBadParam, typ, name, strings.Join(k.params, ", "))
		}
	}
	if opts.OutputCap <= 0 {
		opts.OutputCap = DefaultOutputCap
	}
	return k.build(paramsFor(typ, params), opts)
}

// targeter is implemented by checks whose target depends on the host: they
// render their templated params into the address or URL they connect to.
type targeter interface {
	target(h inventory.Host) (string, error)
}

// Validate checks that the check can be built and that every templated param
// renders for every host: a {{.Vars.zone}} missing on some host, or a tcp
// check with no port anywhere. It cannot know the workers' allowlists: for
// exec and ssh it checks that a command name is given, not that workers
// have it. It returns the first problem, as a *HostError
// naming the host when the problem is the host's. It is what `patrol submit`
// calls before writing anything.
func Validate(typ string, params map[string]string, hosts []inventory.Host) error {
	c, err := New(typ, params)
	if err != nil {
		return err
	}
	t, ok := c.(targeter)
	if !ok {
		return nil
	}
	for _, h := range hosts {
		if _, err := t.target(h); err != nil {
			return err
		}
	}
	return nil
}

// ownTimeout lists the check types whose timeout param bounds the whole
// run, so that it must end before the job's --timeout does.
var ownTimeout = []string{"dns", "icmp", "tls"}

// ValidateTimeout refuses a timeout param of a dns, icmp or tls check
// longer than the job's per-attempt timeout, which would end the run
// first: the check's own timeout could never decide. It is what `patrol
// submit` calls with --timeout, after Validate. A check whose default
// timeout is longer than the job's is clamped at run time, and says so.
func ValidateTimeout(typ string, params map[string]string, job time.Duration) error {
	v, ok := params["timeout"]
	if !ok || job <= 0 || !slices.Contains(ownTimeout, typ) {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= job {
		return nil // Validate reports a malformed one
	}
	return fmt.Errorf("%w: %s timeout=%q is longer than the job's --timeout %s, which would end every run first: pass a --timeout longer than %s, or --param timeout=%s or less",
		ErrBadParam, typ, v, job, d, job)
}

// result builds a Result whose Duration runs from start to now.
func result(start time.Time, s Status, format string, args ...any) Result {
	return Result{Status: s, Message: oneLine(fmt.Sprintf(format, args...)), Duration: time.Since(start)}
}

// oneLine collapses every run of white space in msg to one space and trims
// it, so that a message is one line whatever went in. Most messages are one
// line already and are returned as they are.
func oneLine(msg string) string {
	clean := msg == "" || msg[0] != ' ' && msg[len(msg)-1] != ' '
	for i := 0; clean && i < len(msg); i++ {
		switch c := msg[i]; {
		case c == ' ':
			clean = i+1 < len(msg) && msg[i+1] != ' '
		case c < ' ' || c == 0x7f || c >= 0x80:
			clean = false // control characters, and non-ASCII space such as U+00A0, take the slow path
		}
	}
	if clean {
		return msg
	}
	return strings.Join(strings.Fields(msg), " ")
}

// recoverResult turns a panic in Run into a StatusError result, so that one
// bad check cannot take down the worker running it. Call it deferred.
func recoverResult(res *Result, start time.Time) {
	if v := recover(); v != nil {
		*res = result(start, StatusError, "internal fault: %v", v)
	}
}
