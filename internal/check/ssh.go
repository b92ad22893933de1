package check

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// sshCheck runs a command from the worker's allowlist on the host, over
// SSH, and passes when it exits 0. The job names the command; the worker
// decides what the name runs.
//
// Params:
//
//	name             the command's name in the worker's allowlist
//	                 (Options.SSH, the worker's --allow-ssh NAME='COMMAND');
//	                 required
//	args             words appended to the command, separated by spaces. Each
//	                 word is a template rendered into one argument and
//	                 single-quoted for the remote POSIX shell, so it arrives
//	                 as one literal argument whatever it holds
//	port             template; default the host var ansible_port, else the
//	                 inventory port, else 22
//	timeout          duration for the whole check, connect included; default 30s
//	connect_timeout  duration for the TCP connect and the SSH handshake;
//	                 default 10s
//	host_key_check   strict (default): the host's key must be in known_hosts.
//	                 accept-new: an unknown host's key is appended to
//	                 known_hosts. A key that differs from a known one is
//	                 refused either way
//	nagios           true (default): judge the exit code and output as a
//	                 Nagios plugin's, as exec does; false: exit 0 passes,
//	                 anything else fails
//
// The remote user is the host var ansible_user, else user, else
// Options.SSHUser, else the user running the worker. The worker's keys
// (Options.SSHKeys) are offered, then its agent's ($SSH_AUTH_SOCK).
//
// The exit status is judged as exec judges it: by default as a Nagios
// plugin's (exit 0 ok, 1 warn, 2 fail, 3 error, others fail; the first
// line of output is the message, performance data becomes details), or,
// with nagios=false, exit 0 ok and anything else a fail ending with the
// output's last line. Death by a signal is a fail. A name missing from the
// allowlist, an unknown, changed or revoked host key, refused
// authentication, a session that ends without an exit status, and a
// timeout are errors. A refused connection is a fail, as for tcp.
//
// On timeout or cancellation the remote command's process group is sent
// SIGKILL and the connection is dropped. OpenSSH (7.9 and later) delivers
// the signal for ordinary users but refuses it for root logins, whose
// sessions run without privilege separation: a root command that hangs
// keeps running until it next writes to its closed output, or ends.
//
// Details: "output"; "exit_code" or "signal"; "host_key", the SHA256
// fingerprint of the key the host presented; as a plugin, "perf.<label>..."
// for its performance data.
type sshCheck struct {
	name           string
	args           []*template.Template
	port           *template.Template // nil: ansible_port, inventory port, 22
	timeout        time.Duration
	connectTimeout time.Duration
	acceptNew      bool
	nagios         bool

	allow   map[string]string
	signers []ssh.Signer // from Options.SSHKeys
	user    string       // default user: Options.SSHUser or the worker's
	known   *knownHosts  // nil: no known_hosts path could be found
	cap     int
}

func newSSH(p params, o Options) (Check, error) {
	name, err := p.required("name", "the name of a command in the workers' --allow-ssh list")
	if err != nil {
		return nil, err
	}
	args, err := p.words("args")
	if err != nil {
		return nil, err
	}
	port, err := p.template("port", checkPort, "a port 1-65535, or a template such as {{.Vars.ssh_port}}")
	if err != nil {
		return nil, err
	}
	timeout, err := p.duration("timeout", 30*time.Second, false)
	if err != nil {
		return nil, err
	}
	connectTimeout, err := p.duration("connect_timeout", 10*time.Second, false)
	if err != nil {
		return nil, err
	}
	acceptNew := false
	switch p.m["host_key_check"] {
	case "", "strict":
	case "accept-new":
		acceptNew = true
	default:
		return nil, p.bad("host_key_check", "strict or accept-new")
	}
	nagios, err := p.boolDefault("nagios", true)
	if err != nil {
		return nil, err
	}
	c := &sshCheck{
		name: name, args: args, port: port, timeout: timeout, connectTimeout: connectTimeout, acceptNew: acceptNew, nagios: nagios,
		allow: o.SSH, user: o.SSHUser, cap: o.OutputCap,
	}
	for _, path := range o.SSHKeys {
		s, err := readKey(path)
		if err != nil {
			return nil, err
		}
		c.signers = append(c.signers, s)
	}
	if c.user == "" {
		if u, err := user.Current(); err == nil {
			c.user = u.Username
		}
	}
	path := o.KnownHosts
	if path == "" {
		if home, err := os.UserHomeDir(); err == nil {
			path = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	if path != "" {
		c.known = &knownHosts{path: path}
	}
	return c, nil
}

// readKey reads a private key file for the worker to log in with.
func readKey(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSSHKey, err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var pass *ssh.PassphraseMissingError
	if errors.As(err, &pass) {
		return nil, fmt.Errorf("%w %s: it is protected by a passphrase; load it into an ssh-agent and give the worker SSH_AUTH_SOCK instead",
			ErrSSHKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrSSHKey, path, err)
	}
	return s, nil
}

// target returns the host:port to connect to, and renders the args, so
// that Validate finds a var missing on some host.
func (c *sshCheck) target(h inventory.Host) (string, error) {
	if _, err := renderWords(c.args, h); err != nil {
		return "", err
	}
	port := 22
	switch {
	case c.port != nil:
		var err error
		if port, err = renderPort(c.port, h, 0); err != nil {
			return "", err
		}
	case h.Vars["ansible_port"] != "":
		var err error
		if port, err = parsePort(h.Vars["ansible_port"]); err != nil {
			return "", &HostError{Host: h.Name, Param: "port", Err: fmt.Errorf("ansible_port: %w", err)}
		}
	case h.Port != 0:
		port = h.Port
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port)), nil
}

// userFor returns the remote user for h.
func (c *sshCheck) userFor(h inventory.Host) string {
	for _, v := range []string{h.Vars["ansible_user"], h.Vars["user"], c.user} {
		if v != "" {
			return v
		}
	}
	return ""
}

// shellQuote quotes s as one word for a POSIX shell: inside single quotes
// nothing is special, and each single quote in s closes the quoting, is
// written backslash-escaped, and reopens it.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (c *sshCheck) Run(ctx context.Context, h inventory.Host) (res Result) {
	start := time.Now()
	defer recoverResult(&res, start)

	if ctx.Err() != nil {
		return result(start, StatusError, "ssh %s: cancelled", c.name)
	}
	command, ok := c.allow[c.name]
	if !ok {
		return result(start, StatusError,
			"ssh command %q is not in this worker's allowlist; add --allow-ssh %s='COMMAND' to the worker, or run the job where it is allowed",
			c.name, c.name)
	}
	addr, err := c.target(h)
	if err != nil {
		return result(start, StatusError, "%v", err)
	}
	args, err := renderWords(c.args, h)
	if err != nil {
		return result(start, StatusError, "%v", err)
	}
	for _, a := range args {
		command += " " + shellQuote(a)
	}
	login := c.userFor(h)
	if login == "" {
		return result(start, StatusError, "ssh %s: no remote user: set ansible_user on the host's inventory line or give the worker --ssh-user", addr)
	}
	who := login + "@" + addr
	if c.known == nil {
		return result(start, StatusError, "ssh %s: no known_hosts file: $HOME is not set; give the worker --known-hosts FILE", who)
	}

	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	connectBy := start.Add(min(c.connectTimeout, c.timeout))
	// ended reports whether runCtx ended the run, and says how.
	ended := func() (Result, bool) {
		if runCtx.Err() == nil {
			return Result{}, false
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return result(start, StatusError, "ssh %s: cancelled", who), true
		}
		return result(start, StatusError, "ssh %s: timed out after %s", who, time.Since(start).Round(time.Millisecond)), true
	}

	auth, closeAgent, err := c.auth(connectBy)
	if err != nil {
		return result(start, StatusError, "ssh %s: %v", who, err)
	}
	defer closeAgent()

	dialCtx, dialCancel := context.WithDeadline(runCtx, connectBy)
	defer dialCancel()
	conn, err := (&net.Dialer{}).DialContext(dialCtx, "tcp", addr)
	if err != nil {
		status, why := outcome(ctx, err, start)
		return result(start, status, "ssh %s: connect: %s", who, why)
	}
	// Closing conn ends whatever is blocked on it, handshake or session.
	var session atomic.Pointer[ssh.Session]
	stop := context.AfterFunc(runCtx, func() {
		if s := session.Load(); s != nil {
			s.Signal(ssh.SIGKILL)
		}
		conn.Close()
	})
	defer stop()

	var hostKey atomic.Value
	config := &ssh.ClientConfig{
		User:              login,
		Auth:              []ssh.AuthMethod{auth},
		HostKeyCallback:   c.known.callback(c.acceptNew, &hostKey),
		HostKeyAlgorithms: c.known.algorithms(addr, conn.RemoteAddr()),
	}
	conn.SetDeadline(connectBy)
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, config)
	if err != nil {
		conn.Close()
		var hkErr *hostKeyError
		var unknown *unknownHostError
		switch {
		case errors.As(err, &unknown):
			return result(start, StatusError, "ssh %s: %v", who, unknown)
		case errors.As(err, &hkErr):
			return result(start, StatusError, "ssh %s: %v", who, hkErr)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return result(start, StatusError, "ssh %s: authentication failed: the host accepted none of the worker's %d keys; "+
				"add one to ~%s/.ssh/authorized_keys on the host, or set ansible_user", who, len(auth.signers), login)
		}
		if r, ok := ended(); ok {
			return r
		}
		status, why := outcome(ctx, err, start)
		return result(start, status, "ssh %s: handshake: %s", who, strings.TrimPrefix(why, "ssh: handshake failed: "))
	}
	conn.SetDeadline(time.Time{})
	client := ssh.NewClient(sc, chans, reqs)
	defer func() {
		client.Close()
		client.Wait() // the connection's goroutines have ended
	}()

	sess, err := client.NewSession()
	if err != nil {
		if r, ok := ended(); ok {
			return r
		}
		return result(start, StatusError, "ssh %s: open session: %v", who, err)
	}
	session.Store(sess)
	out := newTailBuffer(c.cap)
	sess.Stdout, sess.Stderr = out, out
	err = sess.Run(command)
	fired := !stop()

	details := map[string]string{"output": out.String()}
	if fp, ok := hostKey.Load().(string); ok {
		details["host_key"] = fp
	}
	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case fired:
		res, _ = ended()
		res.Message += "; sent KILL to the remote command"
	case err == nil:
		res = exitResult(start, "ssh "+who+" "+c.name, 0, details["output"], c.nagios)
	case errors.As(err, &exitErr) && exitErr.Signal() != "":
		details["signal"] = "SIG" + exitErr.Signal()
		res = result(start, StatusFail, "ssh %s %s: killed by signal SIG%s%s", who, c.name, exitErr.Signal(), tailNote(details["output"]))
	case errors.As(err, &exitErr):
		res = exitResult(start, "ssh "+who+" "+c.name, exitErr.ExitStatus(), details["output"], c.nagios)
	case errors.As(err, &missing):
		res = result(start, StatusError, "ssh %s %s: the session ended without an exit status%s", who, c.name, tailNote(details["output"]))
	default:
		res = result(start, StatusError, "ssh %s %s: %v", who, c.name, err)
	}
	if res.Details != nil { // exitResult's: add the host key
		maps.Copy(details, res.Details)
	}
	res.Details = details
	return res
}

// sshAuth is the public keys a connection offers.
type sshAuth struct {
	ssh.AuthMethod
	signers []ssh.Signer
}

// auth gathers the worker's keys and its agent's. The agent connection,
// if any, stays open until closeAgent, since the agent signs during the
// handshake; deadline bounds a hung agent.
func (c *sshCheck) auth(deadline time.Time) (a sshAuth, closeAgent func(), err error) {
	a.signers = slices.Clone(c.signers)
	closeAgent = func() {}
	var agentErr error
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		conn, err := net.DialTimeout("unix", sock, time.Until(deadline))
		if err == nil {
			conn.SetDeadline(deadline)
			closeAgent = func() { conn.Close() }
			s, err := agent.NewClient(conn).Signers()
			a.signers = append(a.signers, s...)
			agentErr = err
		} else {
			agentErr = err
		}
	}
	if len(a.signers) == 0 {
		closeAgent()
		msg := "no SSH key to log in with: give the worker --ssh-key FILE, or run it with SSH_AUTH_SOCK set to an agent holding a key"
		if agentErr != nil {
			msg += fmt.Sprintf(" (agent: %v)", agentErr)
		}
		return sshAuth{}, nil, errors.New(msg)
	}
	a.AuthMethod = ssh.PublicKeys(a.signers...)
	return a, closeAgent, nil
}
