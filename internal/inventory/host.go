package inventory

import (
	"errors"
	"fmt"
)

// MaxHosts is the most hosts one inventory may hold, and the most one host
// range such as web[0:999999] may make. Past it the inventory is almost
// certainly not what the operator meant to submit.
const MaxHosts = 1_000_000

var (
	// ErrEmpty means the inventory holds no hosts, only blank lines and comments.
	ErrEmpty = errors.New("inventory: no hosts")
	// ErrNotFound means the inventory file does not exist.
	ErrNotFound = errors.New("inventory: file does not exist")
	// ErrSyntax means a line could not be read as a host; see ParseError.
	ErrSyntax = errors.New("inventory: syntax error")
	// ErrDuplicate means the same host is listed twice in a plain list, or
	// the same key twice in one YAML or JSON mapping; see ParseError.
	ErrDuplicate = errors.New("inventory: duplicate host")
	// ErrTooMany means the inventory, or one host range, holds more than
	// MaxHosts hosts.
	ErrTooMany = errors.New("inventory: too many hosts")
	// ErrUnsupported means the inventory uses an Ansible feature Patrol does
	// not implement: inventory scripts and plugins, vault-encrypted values.
	ErrUnsupported = errors.New("inventory: unsupported")
	// ErrPattern means a host pattern (patrol's --limit) is malformed.
	ErrPattern = errors.New("inventory: bad host pattern")
	// ErrNoMatch means a host pattern is well formed but selects no host.
	ErrNoMatch = errors.New("inventory: no hosts match")
)

// Host is one inventory entry: the unit a check runs against.
type Host struct {
	// Name is the inventory host name: "web1" in Ansible formats, even for
	// "web1:2222"; in a plain list the whole word as written ("web1:2222",
	// "[::1]:8080"), so that one address may be listed on several ports.
	Name string `json:"name"`
	// Address is the host or IP to connect to, without port and brackets:
	// the ansible_host variable if set, else the address part of Name.
	Address string `json:"address"`
	// Port is the ansible_port variable if set, else the port written after
	// the name; 0 when the inventory gave none.
	Port int `json:"port,omitempty"`
	// Groups are the groups the host belongs to, directly or through
	// children, sorted: Ansible's group_names less "ungrouped". A host in no
	// group has none; every host is in "all", which is never listed.
	Groups []string `json:"groups,omitempty"`
	// Vars are the host's variables merged as Ansible merges them (see the
	// package documentation); nil if none.
	Vars map[string]string `json:"vars,omitempty"`
}

// ParseError reports what is wrong on one line of an inventory.
type ParseError struct {
	Source string // the file name, or what the caller passed to Parse
	Line   int    // 1-based line number; 0 when the problem has no one line
	Msg    string // what is wrong, e.g. `invalid port "99999" (must be 1-65535)`
	Err    error  // ErrSyntax, ErrDuplicate, ErrTooMany or ErrUnsupported
}

func (e *ParseError) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.Source, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.Source, e.Line, e.Msg)
}

func (e *ParseError) Unwrap() error { return e.Err }

// syntaxErr returns a *ParseError wrapping ErrSyntax.
func syntaxErr(source string, line int, format string, args ...any) error {
	return &ParseError{Source: source, Line: line, Err: ErrSyntax, Msg: fmt.Sprintf(format, args...)}
}
