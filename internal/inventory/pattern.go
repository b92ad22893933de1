package inventory

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Select returns the hosts a host pattern names, as Ansible's --limit and
// host patterns do, in the order `ansible PATTERN --list-hosts` prints
// them:
//
//	all, *            every host
//	web               the hosts of group web (with its children's), or host web
//	web:db, web,db    union
//	web:&prod         intersection: web hosts also in prod
//	web:!web1         exclusion
//	web*, db-?.lan    globs (*, ?, [abc], [!abc]) over group and host names
//	~web[0-9]+        a regular expression (Go's RE2 syntax), matched from
//	                  the start of group and host names
//	web[0], web[-1]   the first, the last host of a group (or of any
//	web[0:2]          pattern but a regex); a slice includes its end
//	@hosts.retry      the patterns in a file, one per line
//
// Exclusions and intersections apply after every union, whatever their
// place in the pattern. A pattern that is well formed but names no host
// adds nothing; an error wrapping ErrNoMatch is returned when the whole
// pattern selects no host, and one wrapping ErrPattern when it is
// malformed: a bad regular expression, a slice past a group's end, an
// unreadable @file.
func (inv *Inventory) Select(pattern string) ([]Host, error) {
	patterns, err := expandFiles(splitHostPattern(pattern))
	if err != nil {
		return nil, err
	}
	patterns = orderPatterns(patterns)
	var (
		result []int            // indexes into inv.resolved, in order; may repeat until the end
		inRes  = map[int]bool{} // what result holds
	)
	for _, p := range patterns {
		if h, ok := inv.hostByName[p]; ok && h.idx >= 0 {
			i := h.idx
			result = append(result, i)
			inRes[i] = true
			continue
		}
		that, err := inv.matchOne(p)
		if err != nil {
			return nil, err
		}
		switch p[0] {
		case '!', '&':
			set := make(map[int]bool, len(that))
			for _, i := range that {
				set[i] = true
			}
			kept := result[:0:0]
			for _, i := range result {
				if set[i] == (p[0] == '&') {
					kept = append(kept, i)
				}
			}
			result = kept
			inRes = map[int]bool{}
			for _, i := range result {
				inRes[i] = true
			}
		default:
			for _, i := range that {
				if !inRes[i] {
					result = append(result, i)
					inRes[i] = true
				}
			}
		}
	}
	var out []Host
	seen := map[int]bool{}
	for _, i := range result {
		if !seen[i] {
			seen[i] = true
			out = append(out, inv.resolved[i])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w %q", ErrNoMatch, pattern)
	}
	return out, nil
}

// splitHostPattern splits a pattern into its parts as Ansible does: at
// commas if it has any, else at colons outside brackets, unless the whole
// is one host address (an IPv6 address, or host:port).
func splitHostPattern(pattern string) []string {
	var parts []string
	if strings.Contains(pattern, ",") {
		parts = strings.Split(pattern, ",")
	} else if _, _, ok := parseAddress(pattern); ok {
		parts = []string{pattern}
	} else {
		parts = reHostPatternPart.FindAllString(pattern, -1)
	}
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var reHostPatternPart = regexp.MustCompile(`(?:[^\s:\[\]]|\[[^\]]*\])+`)

// maxLimitFile bounds an @file of patterns.
const maxLimitFile = 16 << 20

// expandFiles replaces each @file part with the patterns in the file, one
// per line.
func expandFiles(parts []string) ([]string, error) {
	var out []string
	for _, p := range parts {
		name, ok := strings.CutPrefix(p, "@")
		if !ok {
			out = append(out, p)
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("%w %q: cannot read the limit file: %v", ErrPattern, p, err)
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("%w %q: a limit starting with @ must be a file, not a directory", ErrPattern, p)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w %q: a limit starting with @ must be a regular file", ErrPattern, p)
		}
		if fi.Size() > maxLimitFile {
			return nil, fmt.Errorf("%w %q: the limit file is larger than %d MiB", ErrPattern, p, maxLimitFile>>20)
		}
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("%w %q: cannot read the limit file: %v", ErrPattern, p, err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
	}
	return out, nil
}

// orderPatterns puts unions first, then intersections, then exclusions;
// with no union the pattern starts from all.
func orderPatterns(patterns []string) []string {
	var regular, and, not []string
	for _, p := range patterns {
		switch p[0] {
		case '!':
			not = append(not, p)
		case '&':
			and = append(and, p)
		default:
			regular = append(regular, p)
		}
	}
	if len(regular) == 0 {
		regular = []string{"all"}
	}
	return append(append(regular, and...), not...)
}

// reSubscript is a pattern ending in [n], [n:m], [n:] (or the old [n-m]).
var reSubscript = regexp.MustCompile(`^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$`)

// matchOne returns the hosts one part names, as indexes into inv.resolved.
// Like Ansible's, the list may hold a host twice (when a group and a host
// name both match), which a slice counts.
func (inv *Inventory) matchOne(p string) ([]int, error) {
	full := p
	if p[0] == '!' || p[0] == '&' {
		p = p[1:]
	}
	if p == "" {
		return nil, fmt.Errorf("%w %q: nothing after %q", ErrPattern, full, full[:1])
	}
	expr, sub, hasSub, err := splitSubscript(p)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrPattern, full, err)
	}
	hosts, err := inv.enumerate(expr)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrPattern, full, err)
	}
	if !hasSub || len(hosts) == 0 {
		return hosts, nil
	}
	start, end := sub[0], sub[1]
	if end == noEnd {
		if start < 0 {
			start += len(hosts)
		}
		if start < 0 || start >= len(hosts) {
			return nil, fmt.Errorf("%w %q: %s has %d hosts, so there is no host [%d]; the first is [0]",
				ErrPattern, full, expr, len(hosts), sub[0])
		}
		return hosts[start : start+1], nil
	}
	if end == toEnd {
		end = len(hosts) - 1
	}
	if end == 0 { // Ansible reads [n:0] as [n]
		if start >= len(hosts) {
			return nil, fmt.Errorf("%w %q: %s has %d hosts, so there is no host [%d]; the first is [0]",
				ErrPattern, full, expr, len(hosts), start)
		}
		return hosts[start : start+1], nil
	}
	if start >= len(hosts) || start > end {
		return nil, nil
	}
	return hosts[start:min(end+1, len(hosts))], nil
}

const (
	noEnd = -1 << 62 // [n]: one host
	toEnd = -1       // [n:]: to the last host
)

func splitSubscript(p string) (expr string, sub [2]int, ok bool, err error) {
	if p[0] == '~' {
		return p, sub, false, nil
	}
	m := reSubscript.FindStringSubmatch(p)
	if m == nil {
		return p, sub, false, nil
	}
	atoi := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n > 1<<40 || n < -(1<<40) {
			return 0, fmt.Errorf("index %s is too large", s)
		}
		return n, nil
	}
	if m[2] != "" {
		n, err := atoi(m[2])
		return m[1], [2]int{n, noEnd}, true, err
	}
	start, err := atoi(m[3])
	if err != nil {
		return "", sub, false, err
	}
	end := toEnd
	if m[5] != "" {
		if end, err = atoi(m[5]); err != nil {
			return "", sub, false, err
		}
	}
	return m[1], [2]int{start, end}, true, nil
}

// enumerate returns the hosts of the groups expr matches, in group order,
// then, if it matched no group or is a glob or regex, the hosts whose
// names it matches.
func (inv *Inventory) enumerate(expr string) ([]int, error) {
	match, err := compileMatcher(expr)
	if err != nil {
		return nil, err
	}
	var out []int
	matchedGroup := false
	for _, g := range inv.groups {
		if match(g.name) {
			matchedGroup = true
			out = append(out, inv.groupMembers(g)...)
		}
	}
	if !matchedGroup || expr[0] == '~' || strings.ContainsAny(expr, ".?*[") {
		for _, h := range inv.hosts {
			if h.idx >= 0 && match(h.name) {
				out = append(out, h.idx)
			}
		}
	}
	return out, nil
}

// groupMembers returns a group's hosts as indexes into inv.resolved,
// computing them once.
func (inv *Inventory) groupMembers(g *group) []int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if m, ok := inv.members[g]; ok {
		return m
	}
	hosts := inv.hostsOf(g)
	m := make([]int, len(hosts))
	for i, h := range hosts {
		m[i] = h.idx
	}
	inv.members[g] = m
	return m
}

// compileMatcher returns a function matching names against expr: a regex
// after '~', else a shell glob (a plain word is a glob matching itself).
func compileMatcher(expr string) (func(string) bool, error) {
	if re, ok := strings.CutPrefix(expr, "~"); ok {
		r, err := regexp.Compile(`^(?:` + re + `)`)
		if err != nil {
			return nil, fmt.Errorf("invalid regular expression (Patrol uses Go's RE2 syntax, "+
				"without lookarounds or backreferences): %v", err)
		}
		return r.MatchString, nil
	}
	if !strings.ContainsAny(expr, "*?[") {
		return func(s string) bool { return s == expr }, nil
	}
	r, err := regexp.Compile(globToRegexp(expr))
	if err != nil {
		return nil, fmt.Errorf("invalid glob: %v", err)
	}
	return r.MatchString, nil
}

// globToRegexp translates a shell glob as Python's fnmatch does: * and ?
// match any characters, [abc] [a-z] a class, [!abc] its complement, and a
// '[' with no ']' after it is itself.
func globToRegexp(glob string) string {
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for i := 0; i < len(glob); {
		c := glob[i]
		switch c {
		case '*':
			b.WriteString(`.*`)
			for i < len(glob) && glob[i] == '*' {
				i++
			}
			continue
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i + 1
			if j < len(glob) && glob[j] == '!' {
				j++
			}
			if j < len(glob) && glob[j] == ']' {
				j++
			}
			for j < len(glob) && glob[j] != ']' {
				j++
			}
			if j >= len(glob) {
				b.WriteString(`\[`)
				break
			}
			b.WriteString(globClass(glob[i+1 : j]))
			i = j + 1
			continue
		default:
			r, size := utf8.DecodeRuneInString(glob[i:])
			b.WriteString(regexp.QuoteMeta(string(r)))
			i += size
			continue
		}
		i++
	}
	b.WriteString(`)$`)
	return b.String()
}

// globClass translates the inside of a [...] glob class.
func globClass(body string) string {
	neg := strings.HasPrefix(body, "!")
	if neg {
		body = body[1:]
	}
	runes := []rune(body)
	var b strings.Builder
	empty := true
	for i := 0; i < len(runes); i++ {
		lo, hi := runes[i], runes[i]
		if i+2 < len(runes) && runes[i+1] == '-' {
			hi = runes[i+2]
			i += 2
		}
		if lo > hi {
			continue // an empty range
		}
		empty = false
		fmt.Fprintf(&b, `\x{%x}-\x{%x}`, lo, hi)
	}
	switch {
	case empty && neg:
		return `.`
	case empty:
		return `[^\x00-\x{10FFFF}]`
	case neg:
		return `[^` + b.String() + `]`
	}
	return `[` + b.String() + `]`
}
