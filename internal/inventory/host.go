package inventory

import (
	"errors"
	"fmt"
)

// MaxHosts is the most hosts one inventory may hold. Past it the inventory is
// almost certainly not what the operator meant to submit.
const MaxHosts = 1_000_000

var (
	// ErrEmpty means the inventory holds no hosts, only blank lines and comments.
	ErrEmpty = errors.New("inventory: no hosts")
	// ErrNotFound means the inventory file does not exist.
	ErrNotFound = errors.New("inventory: file does not exist")
	// ErrSyntax means a line could not be read as a host; see ParseError.
	ErrSyntax = errors.New("inventory: syntax error")
	// ErrDuplicate means the same host is listed twice; see ParseError.
	ErrDuplicate = errors.New("inventory: duplicate host")
	// ErrTooMany means the inventory holds more than MaxHosts hosts.
	ErrTooMany = errors.New("inventory: too many hosts")
)

// Host is one inventory entry: the unit a check runs against.
type Host struct {
	Name    string            `json:"name"`           // as written in the inventory, e.g. "web1", "web1:2222", "[::1]:8080"
	Address string            `json:"address"`        // host/IP to connect to, without port and without brackets ("::1")
	Port    int               `json:"port,omitempty"` // 0 when the inventory gave none
	Vars    map[string]string `json:"vars,omitempty"` // key=value words that followed the host; nil if none
}

// ParseError reports what is wrong on one line of an inventory.
type ParseError struct {
	Source string // the file name, or what the caller passed to Parse
	Line   int    // 1-based line number
	Msg    string // what is wrong, e.g. `invalid port "99999" (must be 1-65535)`
	Err    error  // ErrSyntax, ErrDuplicate or ErrTooMany
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.Source, e.Line, e.Msg) }

func (e *ParseError) Unwrap() error { return e.Err }
