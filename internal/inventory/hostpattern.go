package inventory

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A host pattern is how Ansible's INI and YAML formats name hosts: a name,
// an IPv4 or IPv6 address, optionally with ranges (web[01:20],
// db-[a:f], [0:20:5]) and a port (web1:2222, [2001:db8::1]:22).

var (
	rangeNum   = `\[[0-9]+:[0-9]+(?::[0-9]+)?\]`
	rangeHex   = `\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]`
	ipv4Part   = `(?:[01]?[0-9]{1,2}|2[0-4][0-9]|25[0-5]|` + rangeNum + `)`
	ipv6Part   = `(?:[0-9a-f]{1,4}|` + rangeHex + `)`
	reIPv4     = regexp.MustCompile(`(?i)^(?:` + ipv4Part + `\.){3}` + ipv4Part + `$`)
	reAlnumRng = regexp.MustCompile(`(?i)^\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]`)

	// reIPv6 is Ansible's IPv6 pattern as Python applies it: every
	// alternative anchored at the start, only the last at the end too, so
	// that "fe80::1%eth0" passes as an address with a zone.
	reIPv6 = regexp.MustCompile(`(?i)^(?:` + strings.Join([]string{
		`(?:` + ipv6Part + `:){7}` + ipv6Part,
		`(?:` + ipv6Part + `:){1,6}:`,
		`(?:` + ipv6Part + `:)(?::` + ipv6Part + `){1,6}`,
		`(?:` + ipv6Part + `:){2}(?::` + ipv6Part + `){1,5}`,
		`(?:` + ipv6Part + `:){3}(?::` + ipv6Part + `){1,4}`,
		`(?:` + ipv6Part + `:){4}(?::` + ipv6Part + `){1,3}`,
		`(?:` + ipv6Part + `:){5}(?::` + ipv6Part + `){1,2}`,
		`(?:` + ipv6Part + `:){6}(?::` + ipv6Part + `)`,
		`:(?::` + ipv6Part + `){1,6}`,
		ipv6Part + `?::`,
		`(?:0:){6}(?:` + ipv6Part + `\.){3}` + ipv6Part,
		`::(?:ffff:)?(?:` + ipv6Part + `\.){3}` + ipv6Part,
		`(?:0:){5}ffff:(?:` + ipv6Part + `\.){3}` + ipv6Part + `$`,
	}, "|") + `)`)

	reBracketPort = regexp.MustCompile(`^\[(.+)\]:([0-9]+)$`)
	reHostPort    = regexp.MustCompile(`^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$`)
)

// parseAddress is Ansible's parse_address with ranges allowed: it splits a
// port off a host pattern and checks what is left is a host name or an IP
// address (either may hold ranges). port is -1 when none was given.
func parseAddress(s string) (host string, port int, ok bool) {
	port = -1
	for _, re := range []*regexp.Regexp{reBracketPort, reHostPort} {
		if m := re.FindStringSubmatch(s); m != nil {
			s = m[1]
			n, err := strconv.Atoi(m[2])
			if err != nil || len(m[2]) > 6 {
				n = 1 << 30 // too big to be a port; reported by the caller
			}
			port = n
		}
	}
	if reIPv4.MatchString(s) || reIPv6.MatchString(s) || isRangeHostname(s) {
		return s, port, true
	}
	return "", -1, false
}

// isRangeHostname reports whether s is a host name whose labels may hold
// ranges: labels of letters, digits, '_' and '-', each starting with a
// letter, digit or '_' and not ending with '_' or '-'.
func isRangeHostname(s string) bool {
	if s == "" {
		return false
	}
	for _, label := range splitLabels(s) {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); {
			if m := reAlnumRng.FindString(label[i:]); m != "" {
				i += len(m)
				continue
			}
			r, size := utf8.DecodeRuneInString(label[i:])
			word := r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)
			if !word && (i == 0 || r != '-') {
				return false
			}
			i += size
		}
		if last := label[len(label)-1]; last == '_' || last == '-' {
			return false
		}
	}
	return true
}

// splitLabels splits a host name at the dots outside ranges.
func splitLabels(s string) []string {
	var labels []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '.':
			if depth == 0 {
				labels = append(labels, s[start:i])
				start = i + 1
			}
		}
	}
	return append(labels, s[start:])
}

// hostRange is one [begin:end:step] of a host pattern.
type hostRange struct {
	letters    bool
	begin, end int // letters: indexes into asciiLetters
	step       int
	width      int // zero-padded width, 0 for none
}

// asciiLetters is the order of a letter range, as Python's
// string.ascii_letters: [x:B] runs x, y, z, A, B.
const asciiLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func (r hostRange) count() int {
	if r.end < r.begin {
		return 0
	}
	return (r.end-r.begin)/r.step + 1
}

func (r hostRange) item(i int) string {
	n := r.begin + i*r.step
	if r.letters {
		return asciiLetters[n : n+1]
	}
	s := strconv.Itoa(n)
	if len(s) < r.width {
		s = strings.Repeat("0", r.width-len(s)) + s
	}
	return s
}

// tooBigError is expandRanges' error for a pattern making more than
// MaxHosts hosts; callers report it as ErrTooMany.
type tooBigError struct{ msg string }

func (e *tooBigError) Error() string { return e.msg }

// expandRanges expands the ranges in a host name, leftmost range
// outermost, as Ansible does: web[1:2]-[a:b] is web1-a, web1-b, web2-a,
// web2-b. A name without '[' is returned as is. A pattern making more than
// limit hosts is refused before any is made.
//
// Where Ansible is lenient Patrol refuses: a range whose begin is after its
// end (Ansible makes no hosts), a step that is not a positive number, and
// letter bounds longer than one letter.
func expandRanges(name string, limit int) ([]string, error) {
	if !strings.Contains(name, "[") {
		return []string{name}, nil
	}
	var (
		lits   []string // lits[i] comes before ranges[i]; one more lit than ranges
		ranges []hostRange
		rest   = name
		total  = 1
	)
	for {
		open := strings.IndexByte(rest, '[')
		if open < 0 {
			if strings.Contains(rest, "]") {
				return nil, fmt.Errorf("host pattern %q has ']' without '['", name)
			}
			lits = append(lits, rest)
			break
		}
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return nil, fmt.Errorf("host pattern %q has '[' without ']'; write a range as web[01:20]", name)
		}
		if end < open {
			return nil, fmt.Errorf("host pattern %q has ']' before '['", name)
		}
		r, err := parseRange(rest[open+1 : end])
		if err != nil {
			return nil, fmt.Errorf("host pattern %q: %v", name, err)
		}
		n := r.count()
		if n == 0 {
			return nil, fmt.Errorf("host pattern %q: range [%s] is empty: write the smaller bound first", name, rest[open+1:end])
		}
		if n > limit || total > limit/n {
			return nil, &tooBigError{fmt.Sprintf("host pattern %q makes more than %d hosts; split the inventory",
				name, limit)}
		}
		total *= n
		lits = append(lits, rest[:open])
		ranges = append(ranges, r)
		rest = rest[end+1:]
	}
	out := make([]string, 0, total)
	idx := make([]int, len(ranges))
	var b strings.Builder
	for {
		b.Reset()
		for i, r := range ranges {
			b.WriteString(lits[i])
			b.WriteString(r.item(idx[i]))
		}
		b.WriteString(lits[len(ranges)])
		out = append(out, b.String())
		// Advance the odometer, rightmost range fastest.
		i := len(ranges) - 1
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < ranges[i].count() {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return out, nil
		}
	}
}

// parseRange reads the inside of [begin:end] or [begin:end:step].
func parseRange(s string) (hostRange, error) {
	bounds := strings.Split(s, ":")
	if len(bounds) != 2 && len(bounds) != 3 {
		return hostRange{}, fmt.Errorf("range [%s] must be [begin:end] or [begin:end:step]", s)
	}
	begin, end := bounds[0], bounds[1]
	r := hostRange{step: 1}
	if len(bounds) == 3 {
		n, err := strconv.Atoi(bounds[2])
		if err != nil || n < 1 || !isDigits(bounds[2]) {
			return hostRange{}, fmt.Errorf("range [%s]: step %q must be a positive number", s, bounds[2])
		}
		r.step = n
	}
	if begin == "" {
		begin = "0"
	}
	if end == "" {
		return hostRange{}, fmt.Errorf("range [%s] must give an end, e.g. [01:20]", s)
	}
	if len(begin) > 1 && begin[0] == '0' {
		if len(begin) != len(end) {
			return hostRange{}, fmt.Errorf("range [%s]: zero-padded bounds must have equal length, e.g. [01:20]", s)
		}
		r.width = len(begin)
	}
	if isDigits(begin) && isDigits(end) {
		if len(begin) > 9 || len(end) > 9 {
			return hostRange{}, fmt.Errorf("range [%s]: bounds above 999999999 are not supported", s)
		}
		r.begin, _ = strconv.Atoi(begin)
		r.end, _ = strconv.Atoi(end)
		return r, nil
	}
	bi, ei := strings.IndexByte(asciiLetters, single(begin)), strings.IndexByte(asciiLetters, single(end))
	if bi < 0 || ei < 0 {
		return hostRange{}, fmt.Errorf("range [%s]: bounds must be numbers ([01:20]) or single letters ([a:f])", s)
	}
	if bi > ei {
		return hostRange{}, fmt.Errorf("range [%s]: begin must come before end (a..z then A..Z)", s)
	}
	r.letters, r.begin, r.end = true, bi, ei
	return r, nil
}

// single returns the byte of a one-byte string, or 0.
func single(s string) byte {
	if len(s) != 1 || s[0] == 0 {
		return 0
	}
	return s[0]
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkAddress reports why addr cannot be connected to: it must be a host
// name or an IP address.
func checkAddress(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	if strings.Contains(addr, "{{") || strings.Contains(addr, "{%") {
		return fmt.Errorf("%q is a Jinja template; Patrol does not render templates, write the address itself", addr)
	}
	if strings.Contains(addr, ":") {
		if isIPv6(addr) {
			return nil
		}
		return fmt.Errorf("%q is not a host name or IP address", addr)
	}
	if err := checkHostname(addr); err != nil {
		return fmt.Errorf("%q is not a host name or IP address: use only letters, digits, '-', '.' and '_'", addr)
	}
	return nil
}
