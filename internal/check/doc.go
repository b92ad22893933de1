// Package check holds the checks a worker runs against inventory hosts.
//
// A check is built once per job with New, from a type name ("tcp", "http",
// "noop") and the job's params, and then Run against each host of the job's
// inventory. New checks everything it can without a host: unknown params,
// durations, status codes, template syntax. Validate goes one step further
// and renders every templated param for every host, so that `patrol submit`
// refuses a job that would fail on host 731 before writing anything.
//
// # Outcomes
//
// Run always returns a Result, never an error, and never panics:
//
//	ok     the host passed: the port accepted a connection, the URL answered
//	       with an expected status.
//	fail   the check ran and the host failed it: connection refused or reset,
//	       unexpected HTTP status, a certificate that does not verify, a
//	       redirect loop.
//	error  the check could not decide: timeout, DNS failure, a param that does
//	       not render for this host, cancellation, an internal fault.
//
// Operators alert on fail; error means "look at Patrol or the network, not
// at the host". Result.Message is one human-readable line naming what was
// tried, e.g. "connect 127.0.0.1:8081: connection refused".
//
// # Templates
//
// The params that say where to connect (tcp port, http url) are Go
// text/template strings over the host, so one job can span hosts that differ:
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
// passed to Run, whichever ends first. A check holds no connections between
// runs (HTTP keep-alives are off), so it needs no Close, and a Check is safe
// for concurrent use by several goroutines.
package check
