// Package check holds the checks a worker runs against inventory hosts.
//
// A check is built once per job with New, from a type name ("tcp", "http",
// "tls", "dns", "icmp", "exec", "ssh", "noop") and the job's params, and then Run against each
// host of the job's inventory. A worker builds it with NewWith, passing its
// Options: the exec and ssh allowlists, SSH keys and known_hosts, and the
// output cap. New checks everything it can without a host: unknown params,
// durations, status codes, template syntax. Validate goes one step further
// and renders every templated param for every host, so that `patrol submit`
// refuses a job that would fail on host 731 before writing anything.
//
// # Outcomes
//
// Run always returns a Result, never an error, and never panics:
//
//	ok     the host passed: the port accepted a connection (and its reply
//	       matched), the URL answered with an expected status (and body),
//	       the certificate verifies and is far from expiry, the name
//	       resolved (as expected), pings came back, the plugin exited 0.
//	warn   the host passed, but near a threshold: a certificate within
//	       warn_days of expiry, loss or round trips at warn_loss or
//	       warn_rtt, a Nagios plugin's WARNING (exit 1). Final: the worker
//	       never retries it.
//	fail   the check ran and the host failed it: connection refused or reset,
//	       a reply or body that does not match, unexpected HTTP status, a
//	       certificate that does not verify or expires within fail_days,
//	       NXDOMAIN, too much loss, too many redirects, a plugin's CRITICAL
//	       (or a command that exited non-zero with nagios=false), death by
//	       a signal.
//	error  the check could not decide: timeout, DNS failure, a param that does
//	       not render for this host, cancellation, a command name missing
//	       from the worker's allowlist or a program that cannot start, an
//	       SSH host key that is unknown or changed, refused SSH
//	       authentication, SERVFAIL, no ICMP socket the kernel allows, a
//	       plugin's UNKNOWN (exit 3), an internal fault.
//
// Operators alert on fail; error means "look at Patrol or the network, not
// at the host". Result.Message is one human-readable line naming what was
// tried, e.g. "connect 127.0.0.1:8081: connection refused".
// Result.Details holds what the check measured or captured, by name (http
// "status_code", "ttfb_ms"; exec and ssh "exit_code", "output"); each
// check's type documents its keys.
//
// # What a job may run
//
// A job's params come from whoever can submit; a worker's Options come from
// whoever runs the worker. exec and ssh checks therefore take only a command
// NAME from the job (--param name=disk) and look it up in the worker's
// allowlist; the job adds arguments (args), which never pass through a
// local shell and are single-quoted for the remote one. Validate, run at
// submit time, cannot know the workers' allowlists and checks only that a
// name is given.
//
// # Templates
//
// The params that say where to connect or what to send (tcp port and send,
// http url and header, exec and ssh args, ssh port) are Go text/template
// strings over the host, so one job can span hosts that differ:
//
//	{{.Host}}     the host's name as written in the inventory ("web1:8080")
//	{{.Address}}  the address to connect to, without port or brackets
//	{{.Port}}     the inventory port, 0 if none
//	{{.Vars.x}}   the inventory variable x
//
// A missing variable is an error, not an empty string. Templates are parsed
// once in New and rendered for each host in Run.
//
// # Timeouts and cancellation
//
// Every check bounds its work with its timeout param and with the context
// passed to Run, whichever ends first. An exec check then kills the
// program's whole process group; an ssh check sends KILL to the remote
// command and drops the connection. A check holds no connections or
// processes between runs (HTTP keep-alives are off), so it needs no Close,
// and a Check is safe for concurrent use by several goroutines.
package check
