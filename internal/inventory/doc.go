// Package inventory reads the list of hosts a check runs against.
//
// # Format
//
// An inventory is plain text, one host per line:
//
//	# web tier
//	web1                      # name only: Port is 0, the check decides
//	web2:8080                 # name and port
//	10.0.0.7:22
//	[2001:db8::1]:443         # IPv6 with a port goes in brackets
//	2001:db8::2               # bare IPv6 without a port is fine too
//	db1:5432 zone=dc1 role=db # trailing key=value words become Host.Vars
//
// Surrounding whitespace is trimmed and blank lines are skipped. A '#' at the
// start of a line, or after whitespace, starts a comment that runs to the end
// of the line ("web#1" is not a comment, and not a valid name either).
//
// Variables follow the host, separated by whitespace. A variable name starts
// with a letter or '_' and continues with letters, digits and '_', so that a
// check template can write {{.Vars.zone}}. The value runs from the first '='
// to the end of the word and may be empty ("zone="); it cannot contain
// whitespace. A name may appear once per line.
//
// # What is refused
//
// Parse stops at the first problem and reports it as a *ParseError of the form
//
//	inventory.txt:7: invalid port "99999" (must be 1-65535)
//
// It refuses ports outside 1-65535, an empty host (":22"), a '[' without its
// ']', characters that cannot be in a host name (control characters, '/',
// anything but letters, digits, '-', '.' and '_' outside an IP address),
// malformed variables, and the same host listed twice (compared without
// regard to case, as DNS does): a check would then run twice against one
// host, which is never what the operator meant. An inventory with no hosts
// is refused with ErrEmpty, and one with more than MaxHosts with ErrTooMany.
package inventory
