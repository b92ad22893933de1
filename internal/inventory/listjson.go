package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// ParseJSON reads a JSON inventory from r. It takes the shape
// `ansible-inventory --list` prints (and inventory scripts print): each
// group maps to "hosts" (a list of names), "vars" and "children" (a list of
// group names), and "_meta"."hostvars" maps each host to its variables. A
// JSON file shaped as a YAML inventory (hosts and children as mappings) is
// read as one. source names r in errors. group_vars/ and host_vars/ are not
// read: use Load for that.
func ParseJSON(r io.Reader, source string) (*Inventory, error) {
	return parseOne(r, source, parseJSONInventory)
}

func parseJSONInventory(inv *Inventory, data []byte, source string) error {
	root, err := readYAML(data, source) // JSON first, as Ansible's loader reads
	if err != nil {
		if !json.Valid(data) && errors.Is(err, ErrSyntax) {
			if _, jerr := decodeJSON(data, source); jerr != nil {
				return jerr // not YAML either: the JSON error is the one to show
			}
		}
		return err
	}
	if !isListShape(root) {
		return (&groupWalker{inv: inv, source: source}).inventory(root)
	}
	return listInventory(inv, root.(*omap), source)
}

// isListShape reports whether a JSON inventory is in --list shape rather
// than YAML shape: it has _meta, a group given as a list of hosts, or
// hosts or children given as lists.
func isListShape(root any) bool {
	m, ok := root.(*omap)
	if !ok {
		return false
	}
	if _, ok := m.get("_meta"); ok {
		return true
	}
	for _, v := range m.vals {
		switch g := v.(type) {
		case []any:
			return true
		case *omap:
			for _, k := range []string{"hosts", "children"} {
				if l, ok := g.get(k); ok {
					if _, isList := l.([]any); isList {
						return true
					}
				}
			}
		}
	}
	return false
}

// listInventory reads the --list shape as Ansible's script plugin does.
func listInventory(inv *Inventory, root *omap, source string) error {
	var (
		hostvars *omap
		listed   []*host
		seen     = map[*host]bool{}
	)
	for i, name := range root.names {
		at := pos{source, root.lines[i]}
		data := root.vals[i]
		if name == "_meta" {
			meta, ok := data.(*omap)
			if !ok {
				return syntaxErr(source, at.line, "_meta must be a mapping with hostvars, not %s", describe(data))
			}
			if hv, ok := meta.get("hostvars"); ok {
				if hostvars, ok = hv.(*omap); !ok && hv != nil {
					return syntaxErr(source, at.line, "_meta.hostvars must map host names to their variables, not %s", describe(hv))
				}
			}
			continue
		}
		g, err := inv.addGroup(name, at)
		if err != nil {
			return err
		}
		gm, ok := data.(*omap)
		switch {
		case !ok:
			gm = newOmap()
			gm.set("hosts", data, at.line)
		case gm.len() > 0 && !hasAny(gm, "hosts", "vars", "children"):
			// A group holding neither is, to Ansible, a host of the same
			// name with these variables.
			vars := gm
			gm = newOmap()
			gm.set("hosts", []any{name}, at.line)
			gm.set("vars", vars, at.line)
		}
		if hv, ok := gm.get("hosts"); ok {
			list, ok := hv.([]any)
			if !ok {
				return syntaxErr(source, at.line, "hosts of group %q must be a list of host names, not %s", name, describe(hv))
			}
			for _, e := range list {
				hn, ok := e.(string)
				if !ok {
					return syntaxErr(source, at.line, "group %q lists host %s, which is not text", name, describe(e))
				}
				h, err := inv.addHost(hn, g, -1, at)
				if err != nil {
					return err
				}
				if !seen[h] {
					seen[h] = true
					listed = append(listed, h)
				}
			}
		}
		if vv, ok := gm.get("vars"); ok {
			vars, ok := vv.(*omap)
			if !ok {
				return syntaxErr(source, at.line, "vars of group %q must be a mapping, not %s", name, describe(vv))
			}
			for j := range vars.names {
				if err := setGroupVar(g, vars.keys[j], vars.vals[j], at); err != nil {
					return err
				}
			}
		}
		if cv, ok := gm.get("children"); ok {
			list, ok := cv.([]any)
			if !ok {
				return syntaxErr(source, at.line, "children of group %q must be a list of group names, not %s", name, describe(cv))
			}
			for _, e := range list {
				cn, ok := e.(string)
				if !ok {
					return syntaxErr(source, at.line, "group %q lists child %s, which is not text", name, describe(e))
				}
				child, err := inv.addGroup(cn, at)
				if err != nil {
					return err
				}
				if err := inv.addChild(g, child); err != nil {
					return syntaxErr(source, at.line, "%v", err)
				}
			}
		}
	}
	if hostvars == nil {
		return nil
	}
	for _, h := range listed {
		v, ok := hostvars.get(h.name)
		if !ok || v == nil {
			continue
		}
		vars, ok := v.(*omap)
		if !ok {
			i, _ := hostvars.find(h.name)
			return syntaxErr(source, hostvars.lines[i],
				"_meta.hostvars of %q must be a mapping, not %s", h.name, describe(v))
		}
		for j := range vars.names {
			h.vars.set(vars.keys[j], vars.vals[j], vars.lines[j])
		}
	}
	return nil
}

func hasAny(m *omap, keys ...string) bool {
	for _, k := range keys {
		if _, ok := m.get(k); ok {
			return true
		}
	}
	return false
}

// decodeJSON reads a JSON document into a value, keeping the order of
// keys, as Python's json module does: integers are exact, numbers with a
// fraction or exponent are floats. The same key twice in one object is
// refused.
func decodeJSON(data []byte, source string) (any, error) {
	d := &jsonReader{dec: json.NewDecoder(bytes.NewReader(data)), source: source}
	d.dec.UseNumber()
	for i, c := range data {
		if c == '\n' {
			d.newlines = append(d.newlines, i)
		}
	}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	return v, nil
}

type jsonReader struct {
	dec      *json.Decoder
	source   string
	newlines []int // offsets of '\n', to turn offsets into lines
}

// line returns the line of the decoder's position.
func (d *jsonReader) line() int {
	off := int(d.dec.InputOffset())
	return sort.SearchInts(d.newlines, off) + 1
}

func (d *jsonReader) fail(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return syntaxErr(d.source, len(d.newlines)+1, "invalid JSON: the file ends before a bracket or brace is closed")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return syntaxErr(d.source, sort.SearchInts(d.newlines, int(se.Offset))+1, "invalid JSON: %v", se)
	}
	return syntaxErr(d.source, d.line(), "invalid JSON: %v", err)
}

func (d *jsonReader) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, syntaxErr(d.source, d.line(), "JSON nested more than %d deep", maxDepth)
	}
	t, err := d.dec.Token()
	if err != nil {
		return nil, d.fail(err)
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '[':
			list := []any{}
			for d.dec.More() {
				v, err := d.value(depth + 1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if _, err := d.dec.Token(); err != nil {
				return nil, d.fail(err)
			}
			return list, nil
		case '{':
			m := newOmap()
			for d.dec.More() {
				kt, err := d.dec.Token()
				if err != nil {
					return nil, d.fail(err)
				}
				k := kt.(string)
				line := d.line()
				if i, dup := m.find(k); dup {
					return nil, &ParseError{Source: d.source, Line: line, Err: ErrDuplicate, Msg: fmt.Sprintf(
						"key %q is already set on line %d; remove one (Ansible would keep only the last)", k, m.lines[i])}
				}
				v, err := d.value(depth + 1)
				if err != nil {
					return nil, err
				}
				m.set(k, v, line)
			}
			if _, err := d.dec.Token(); err != nil {
				return nil, d.fail(err)
			}
			return m, nil
		}
	case json.Number:
		s := string(t)
		if strings.ContainsAny(s, ".eE") {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil && !isRangeErr(err) {
				return nil, syntaxErr(d.source, d.line(), "invalid number %s", s)
			}
			return f, nil
		}
		n, ok := parseBigInt(strings.TrimPrefix(s, "-"), 10, strings.HasPrefix(s, "-"))
		if !ok {
			return nil, syntaxErr(d.source, d.line(), "number %.20s... has more than %d digits", s, maxIntDigits)
		}
		return n, nil
	case string, bool, nil:
		return t, nil
	}
	return nil, syntaxErr(d.source, d.line(), "unexpected JSON token %v", t)
}
