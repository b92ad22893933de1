package inventory

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxLineLen bounds one inventory line; longer lines are refused, not split.
const maxLineLen = 64 << 10

// ParseFile reads the inventory at path, in any format Load reads, and
// returns its hosts in inventory order. Errors name the path.
func ParseFile(path string) ([]Host, error) {
	inv, err := Load(path)
	if err != nil {
		return nil, err
	}
	return inv.Hosts(), nil
}

// Parse reads a plain host list from r, in the format described in the
// package documentation. source names r in errors, usually the file name.
func Parse(r io.Reader, source string) ([]Host, error) {
	if source == "" {
		source = "inventory"
	}
	hosts, _, err := parsePlain(r, source)
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, plainEmptyErr(source)
	}
	return hosts, nil
}

func plainEmptyErr(source string) error {
	return fmt.Errorf("%s: %w (only blank lines and comments); add one host per line, e.g. web1 or web1:22",
		source, ErrEmpty)
}

// parsePlain reads a plain host list, which may be empty, and the line of
// each host.
func parsePlain(r io.Reader, source string) ([]Host, []int, error) {
	var (
		hosts []Host
		lines []int
		seen  = make(map[string]int) // lower-cased Name -> line it was first listed on
		sc    = bufio.NewScanner(r)
		line  = 0
	)
	sc.Buffer(make([]byte, 0, 4096), maxLineLen)
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			text = strings.TrimPrefix(text, "\uFEFF") // byte order mark left by some editors
		}
		h, ok, err := parseLine(text)
		if err != nil {
			return nil, nil, &ParseError{Source: source, Line: line, Msg: err.Error(), Err: ErrSyntax}
		}
		if !ok {
			continue
		}
		key := strings.ToLower(h.Name)
		if first, dup := seen[key]; dup {
			return nil, nil, &ParseError{Source: source, Line: line, Err: ErrDuplicate, Msg: fmt.Sprintf(
				"host %q is already listed on line %d; remove one of them, or a check would run twice against it",
				h.Name, first)}
		}
		if len(hosts) == MaxHosts {
			return nil, nil, &ParseError{Source: source, Line: line, Err: ErrTooMany, Msg: fmt.Sprintf(
				"more than %d hosts; split the inventory into several jobs", MaxHosts)}
		}
		seen[key] = line
		hosts = append(hosts, h)
		lines = append(lines, line)
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, nil, &ParseError{Source: source, Line: line + 1, Err: ErrSyntax, Msg: fmt.Sprintf(
			"line longer than %d KiB; write one host per line", maxLineLen>>10)}
	} else if err != nil {
		return nil, nil, fmt.Errorf("%s: reading inventory: %w", source, err)
	}
	return hosts, lines, nil
}

// parseLine reads one line. It reports ok == false for a blank or comment
// line, and an error saying what is wrong for a line that is neither a host
// nor blank.
func parseLine(text string) (h Host, ok bool, err error) {
	words := strings.Fields(text)
	for i, w := range words {
		if strings.HasPrefix(w, "#") {
			words = words[:i]
			break
		}
	}
	if len(words) == 0 {
		return Host{}, false, nil
	}
	name := words[0]
	if strings.Contains(name, "=") && !strings.HasPrefix(name, "[") {
		return Host{}, false, fmt.Errorf("line starts with variable %q; write the host first, e.g. web1 %s", name, name)
	}
	addr, port, err := splitHost(name)
	if err != nil {
		return Host{}, false, err
	}
	vars, err := parseVars(words[1:])
	if err != nil {
		return Host{}, false, err
	}
	return Host{Name: name, Address: addr, Port: port, Vars: vars}, true, nil
}

// splitHost splits one host word into address and port (0 if none).
func splitHost(word string) (addr string, port int, err error) {
	for _, r := range word {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return "", 0, fmt.Errorf("host %q contains control character or invalid UTF-8 %q", word, r)
		}
	}
	if strings.Contains(word, "/") {
		return "", 0, fmt.Errorf("host %q contains '/'; write a host name or IP address (ranges and URLs are not supported)", word)
	}

	if rest, ok := strings.CutPrefix(word, "["); ok {
		inside, after, ok := strings.Cut(rest, "]")
		if !ok {
			return "", 0, fmt.Errorf("host %q has '[' without ']'; write IPv6 with a port as [2001:db8::1]:22", word)
		}
		if !isIPv6(inside) {
			return "", 0, fmt.Errorf("host %q: %q is not an IPv6 address (brackets are only for IPv6)", word, inside)
		}
		if after == "" {
			return inside, 0, nil
		}
		p, ok := strings.CutPrefix(after, ":")
		if !ok {
			return "", 0, fmt.Errorf("host %q: unexpected %q after ']'; write [2001:db8::1]:22", word, after)
		}
		port, err := parsePort(p)
		return inside, port, err
	}

	switch strings.Count(word, ":") {
	case 0:
		return word, 0, checkHostname(word)
	case 1:
		host, p, _ := strings.Cut(word, ":")
		if host == "" {
			return "", 0, fmt.Errorf("empty host before %q; write it as name:port", ":"+p)
		}
		if err := checkHostname(host); err != nil {
			return "", 0, err
		}
		port, err := parsePort(p)
		return host, port, err
	default:
		if !isIPv6(word) {
			return "", 0, fmt.Errorf("host %q is not an IPv6 address; write IPv6 with a port as [2001:db8::1]:22", word)
		}
		return word, 0, nil
	}
}

// isIPv6 reports whether s is an IPv6 address, with an optional zone that
// names an interface ("fe80::1%eth0").
func isIPv6(s string) bool {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is6() {
		return false
	}
	_, zone, _ := strings.Cut(s, "%")
	return checkHostname(zone) == nil
}

// checkHostname accepts a DNS name or IPv4 address.
func checkHostname(s string) error {
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			continue
		}
		return fmt.Errorf("invalid character %q in host %q; use only letters, digits, '-', '.' and '_'", r, s)
	}
	return nil
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New(`missing port after ':'; write it as name:port, or drop the ':'`)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("invalid port %q (must be 1-65535)", s)
	}
	return n, nil
}

// parseVars reads the key=value words after a host; nil if there are none.
func parseVars(words []string) (map[string]string, error) {
	if len(words) == 0 {
		return nil, nil
	}
	vars := make(map[string]string, len(words))
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("unexpected %q after the host; extra words must be key=value variables, one host per line", w)
		}
		if !validVarName(k) {
			return nil, fmt.Errorf("invalid variable %q: the name must start with a letter or '_' and contain only letters, digits and '_'", w)
		}
		for _, r := range v {
			if r == utf8.RuneError || unicode.IsControl(r) {
				return nil, fmt.Errorf("variable %q contains control character or invalid UTF-8 %q", k, r)
			}
		}
		if _, dup := vars[k]; dup {
			return nil, fmt.Errorf("variable %q is set twice on this line", k)
		}
		vars[k] = v
	}
	return vars, nil
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_'
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}
