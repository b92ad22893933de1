package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ParseINI reads an Ansible INI inventory from r. source names r in
// errors. group_vars/ and host_vars/ are not read: use Load for that.
func ParseINI(r io.Reader, source string) (*Inventory, error) {
	return parseOne(r, source, parseINI)
}

var (
	// An INI section header, [name] or [name:type], as Ansible's ini
	// plugin reads it.
	reSection = regexp.MustCompile(`^\[([^:\]\s]+)(?::([\p{L}\p{N}_]+))?\]\s*(?:#.*)?$`)
	// A line of a [name:children] section.
	reChildName = regexp.MustCompile(`^([^:\]\s]+)\s*(?:#.*)?$`)
)

// pendingDecl is a group named before it is defined: in a [g:vars]
// header, or as a child in a [p:children] section.
type pendingDecl struct {
	line    int
	state   string // "vars" or "children"
	parents []string
}

// parseINI reads an Ansible INI inventory into inv, following Ansible's
// ini plugin line by line (see the package documentation for what it
// accepts).
func parseINI(inv *Inventory, data []byte, source string) error {
	var (
		pending      = map[string]*pendingDecl{}
		pendingOrder []string
		groupname    = "ungrouped"
		state        = "hosts"
		lineno       = 0
	)
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	for len(data) > 0 {
		lineno++
		var raw []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			raw, data = data[:i], data[i+1:]
		} else {
			raw, data = data, nil
		}
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		at := pos{source, lineno}
		if len(raw) > maxLineLen {
			return syntaxErr(source, lineno, "line longer than %d KiB", maxLineLen>>10)
		}
		if !utf8.Valid(raw) {
			return syntaxErr(source, lineno, "line is not valid UTF-8")
		}
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		for _, r := range line {
			if unicode.IsControl(r) && r != '\t' {
				return syntaxErr(source, lineno, "line contains control character %q", r)
			}
		}

		if m := reSection.FindStringSubmatch(line); m != nil {
			groupname, state = m[1], m[2]
			if state == "" {
				state = "hosts"
			}
			if state != "hosts" && state != "children" && state != "vars" {
				return syntaxErr(source, lineno, "section [%s:%s] has unknown type %q; use [%s], [%s:children] or [%s:vars]",
					m[1], m[2], m[2], m[1], m[1], m[1])
			}
			if _, ok := inv.groupByName[groupname]; !ok {
				if state == "vars" && pending[groupname] == nil {
					pending[groupname] = &pendingDecl{line: lineno, state: "vars"}
					pendingOrder = append(pendingOrder, groupname)
				}
				if _, err := inv.addGroup(groupname, at); err != nil {
					return err
				}
			}
			if d := pending[groupname]; d != nil && state != "vars" {
				switch d.state {
				case "children":
					if err := inv.addPendingChildren(groupname, pending, at); err != nil {
						return err
					}
				case "vars":
					delete(pending, groupname)
				}
			}
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			return syntaxErr(source, lineno, "invalid section %s: a section is [group], [group:children] or [group:vars], "+
				"with no spaces; a bare IPv6 address is written without brackets", line)
		}

		g := inv.groupByName[groupname]
		switch state {
		case "hosts":
			if err := inv.iniHostLine(g, line, at); err != nil {
				return err
			}
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return syntaxErr(source, lineno, "expected key=value in [%s:vars], got %q", groupname, line)
			}
			k = strings.TrimSpace(k)
			if k == "" {
				return syntaxErr(source, lineno, "variable with no name in %q", line)
			}
			if err := setGroupVar(g, k, iniValue(strings.TrimSpace(v)), at); err != nil {
				return err
			}
		case "children":
			m := reChildName.FindStringSubmatch(line)
			if m == nil {
				return syntaxErr(source, lineno, "expected a group name in [%s:children], got %q", groupname, line)
			}
			child := m[1]
			if c, ok := inv.groupByName[child]; ok {
				if err := inv.addChild(g, c); err != nil {
					return syntaxErr(source, lineno, "%v", err)
				}
			} else if d := pending[child]; d != nil {
				d.parents = append(d.parents, groupname)
			} else {
				pending[child] = &pendingDecl{line: lineno, state: "children", parents: []string{groupname}}
				pendingOrder = append(pendingOrder, child)
			}
		}
	}
	for _, name := range pendingOrder {
		d := pending[name]
		if d == nil {
			continue
		}
		if d.state == "vars" {
			return syntaxErr(source, d.line, "section [%s:vars] is for group %q, which has no [%s] or [%s:children] section",
				name, name, name, name)
		}
		return syntaxErr(source, d.line, "section [%s:children] names group %q, which is defined nowhere; add a [%s] section",
			d.parents[len(d.parents)-1], name, name)
	}
	return nil
}

// addPendingChildren adds group name to the parents that named it as a
// child before it was defined.
func (inv *Inventory) addPendingChildren(name string, pending map[string]*pendingDecl, at pos) error {
	d := pending[name]
	delete(pending, name)
	for _, parent := range d.parents {
		if err := inv.addChild(inv.groupByName[parent], inv.groupByName[name]); err != nil {
			return syntaxErr(at.source, at.line, "%v", err)
		}
		if pd := pending[parent]; pd != nil && pd.state == "children" {
			if err := inv.addPendingChildren(parent, pending, at); err != nil {
				return err
			}
		}
	}
	return nil
}

// iniHostLine reads a host line: a host pattern, then key=value words,
// split as a POSIX shell would ('#' starts a comment, even inside a word).
func (inv *Inventory) iniHostLine(g *group, line string, at pos) error {
	tokens, err := shlexSplit(line)
	if err != nil {
		return syntaxErr(at.source, at.line, "cannot read host line %q: %v", line, err)
	}
	if len(tokens) == 0 {
		return syntaxErr(at.source, at.line, "expected a host, got %q", line)
	}
	names, port, err := expandHostPattern(tokens[0], true, inv.maxHosts)
	if err != nil {
		var tb *tooBigError
		if errors.As(err, &tb) {
			return &ParseError{Source: at.source, Line: at.line, Err: ErrTooMany, Msg: err.Error()}
		}
		return syntaxErr(at.source, at.line, "%v", err)
	}
	vars := newOmap()
	for _, t := range tokens[1:] {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return syntaxErr(at.source, at.line, "expected key=value after the host, got %q", t)
		}
		if k == "" {
			return syntaxErr(at.source, at.line, "variable with no name in %q", t)
		}
		vars.set(k, iniValue(v), at.line)
	}
	for _, name := range names {
		h, err := inv.addHost(name, g, port, at)
		if err != nil {
			return err
		}
		for i, k := range vars.names {
			h.vars.set(k, vars.vals[i], at.line)
		}
	}
	return nil
}

// iniValue is an INI variable's value: a Python literal, else the text.
func iniValue(s string) any {
	if v, ok := pyLiteral(s); ok {
		return v
	}
	return s
}

// expandHostPattern splits a host pattern into its host names and port
// (-1 for none). ini adds the INI format's own checks.
func expandHostPattern(pattern string, ini bool, limit int) (names []string, port int, err error) {
	host, port, ok := parseAddress(pattern)
	if !ok {
		// Ansible keeps a pattern it cannot read as an address as the name.
		host, port = pattern, -1
	}
	if ini && port < 0 && strings.HasSuffix(strings.TrimSpace(pattern), ":") {
		return nil, 0, fmt.Errorf("host %q ends in ':'; write a port after it, or drop the ':'", pattern)
	}
	if port == 0 || port > 65535 {
		return nil, 0, fmt.Errorf("host %q: invalid port (must be 1-65535)", pattern)
	}
	names, err = expandRanges(host, limit)
	if err != nil {
		return nil, 0, err
	}
	if ini {
		for _, n := range names {
			if strings.TrimSpace(n) == "---" {
				return nil, 0, fmt.Errorf("host %q: '---' starts a YAML document; name a YAML inventory .yml", pattern)
			}
		}
	}
	return names, port, nil
}

// shlexSplit splits a line into words as Python's shlex.split(line,
// comments=True) does, which is how Ansible reads an INI host line:
// whitespace separates words, quotes group them, a backslash escapes, and
// '#' outside quotes ends the line, even in the middle of a word.
func shlexSplit(s string) ([]string, error) {
	var (
		words   []string
		word    strings.Builder
		state   byte = ' ' // ' ' between words, 'a' in a word, a quote, or '\\'
		escaped byte = 'a' // the state a backslash returns to
		quoted  bool       // the current word had quotes: emit it even if empty
	)
	emit := func() {
		if word.Len() > 0 || quoted {
			words = append(words, word.String())
		}
		word.Reset()
		quoted = false
	}
	for i := 0; ; i++ {
		eof := i >= len(s)
		var c byte
		if !eof {
			c = s[i]
		}
		switch state {
		case ' ', 'a':
			switch {
			case eof:
				emit()
				return words, nil
			case c == ' ' || c == '\t' || c == '\r' || c == '\n':
				if state == 'a' {
					emit()
				}
				state = ' '
			case c == '#':
				emit()
				return words, nil
			case c == '\\':
				escaped, state = 'a', '\\'
			case c == '\'' || c == '"':
				state = c
			default:
				word.WriteByte(c)
				state = 'a'
			}
		case '\'', '"':
			quoted = true
			switch {
			case eof:
				return nil, errors.New("no closing quotation")
			case c == state:
				state = 'a'
			case c == '\\' && state == '"':
				escaped, state = '"', '\\'
			default:
				word.WriteByte(c)
			}
		case '\\':
			if eof {
				return nil, errors.New("no escaped character")
			}
			// Inside double quotes only the quote and the backslash escape.
			if escaped == '"' && c != '\\' && c != '"' {
				word.WriteByte('\\')
			}
			word.WriteByte(c)
			state = escaped
		}
	}
}
