package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ParseYAML reads an Ansible YAML inventory from r: groups mapping to
// hosts, vars and children. As Ansible does, it first tries to read r as
// JSON. source names r in errors. group_vars/ and host_vars/ are not read:
// use Load for that.
func ParseYAML(r io.Reader, source string) (*Inventory, error) {
	return parseOne(r, source, parseYAMLInventory)
}

func parseYAMLInventory(inv *Inventory, data []byte, source string) error {
	root, err := readYAML(data, source)
	if err != nil {
		return err
	}
	return (&groupWalker{inv: inv, source: source}).inventory(root)
}

// readYAML reads a YAML (or JSON) document into a value (see value.go);
// nil for an empty document. Like Ansible's loader it reads JSON as JSON
// first, and YAML scalars as PyYAML does (YAML 1.1: yes and on are true,
// 0755 is octal, 1e3 is text).
func readYAML(data []byte, source string) (any, error) {
	if bytes.HasPrefix(data, []byte("$ANSIBLE_VAULT;")) {
		return nil, &ParseError{Source: source, Line: 1, Err: ErrUnsupported,
			Msg: "the file is encrypted with ansible-vault, which Patrol cannot decrypt; decrypt it with ansible-vault decrypt"}
	}
	if json.Valid(data) {
		return decodeJSON(data, source)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(source, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(source, err)
		}
		return nil, syntaxErr(source, extra.Line, "a second YAML document; an inventory file holds one")
	}
	c := &yamlReader{source: source, memo: map[*yaml.Node]any{}, active: map[*yaml.Node]bool{}}
	return c.value(&doc, 0)
}

var reYAMLLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlError turns a yaml.v3 error into a *ParseError with its line.
func yamlError(source string, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	line := 0
	if m := reYAMLLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return syntaxErr(source, line, "invalid YAML: %s", msg)
}

// yamlReader converts yaml.v3 nodes to values. Each node is converted once
// and its value shared wherever an alias repeats it.
type yamlReader struct {
	source string
	memo   map[*yaml.Node]any
	active map[*yaml.Node]bool // nodes being converted, to refuse recursive aliases
}

func (c *yamlReader) value(n *yaml.Node, depth int) (any, error) {
	if depth > maxDepth {
		return nil, syntaxErr(c.source, n.Line, "YAML nested more than %d deep", maxDepth)
	}
	if v, ok := c.memo[n]; ok {
		return v, nil
	}
	if c.active[n] {
		return nil, syntaxErr(c.source, n.Line, "YAML alias refers to the value it is inside of")
	}
	c.active[n] = true
	defer delete(c.active, n)
	var (
		v   any
		err error
	)
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			v, err = c.value(n.Content[0], depth)
		}
	case yaml.AliasNode:
		v, err = c.value(n.Alias, depth)
	case yaml.ScalarNode:
		v, err = c.scalar(n)
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			ev, err := c.value(e, depth+1)
			if err != nil {
				return nil, err
			}
			list = append(list, ev)
		}
		v = list
	case yaml.MappingNode:
		v, err = c.mapping(n, depth)
	default:
		err = syntaxErr(c.source, n.Line, "unexpected YAML node")
	}
	if err != nil {
		return nil, err
	}
	c.memo[n] = v
	return v, nil
}

// mapping converts a mapping, applying merge keys ("<<: *base") as PyYAML
// does: explicit keys win over merged ones, and of several merged maps the
// first listed wins. The same key written twice is refused (Ansible warns
// and keeps the last).
func (c *yamlReader) mapping(n *yaml.Node, depth int) (any, error) {
	m := newOmap()
	var merges []*omap
	explicit := map[string]int{} // key -> line, to refuse duplicates
	type pair struct {
		k    any
		v    any
		line int
	}
	var pairs []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind == yaml.ScalarNode && kn.Value == "<<" && kn.Style == 0 {
			mv, err := c.value(vn, depth+1)
			if err != nil {
				return nil, err
			}
			switch mv := mv.(type) {
			case *omap:
				merges = append(merges, mv)
			case []any:
				for j := len(mv) - 1; j >= 0; j-- { // PyYAML: the first listed wins
					sub, ok := mv[j].(*omap)
					if !ok {
						return nil, syntaxErr(c.source, vn.Line, "a merge key (<<) takes mappings, not %s", describe(mv[j]))
					}
					merges = append(merges, sub)
				}
			default:
				return nil, syntaxErr(c.source, vn.Line, "a merge key (<<) takes a mapping or a list of mappings, not %s", describe(mv))
			}
			continue
		}
		k, err := c.value(kn, depth+1)
		if err != nil {
			return nil, err
		}
		switch k.(type) {
		case []any, *omap:
			return nil, syntaxErr(c.source, kn.Line, "a mapping key must be a scalar, not %s", describe(k))
		}
		name := renderKey(k)
		if first, dup := explicit[name]; dup {
			return nil, &ParseError{Source: c.source, Line: kn.Line, Err: ErrDuplicate, Msg: fmt.Sprintf(
				"key %q is already set on line %d; remove one (Ansible would keep only the last)", name, first)}
		}
		explicit[name] = kn.Line
		v, err := c.value(vn, depth+1)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, pair{k, v, kn.Line})
	}
	for _, mm := range merges {
		for i := range mm.names {
			m.set(mm.keys[i], mm.vals[i], mm.lines[i])
		}
	}
	for _, p := range pairs {
		m.set(p.k, p.v, p.line)
	}
	return m, nil
}

// The implicit types of plain YAML scalars, as PyYAML (YAML 1.1) resolves them.
var (
	reYBool  = regexp.MustCompile(`^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$`)
	reYFloat = regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`)
	reYInt   = regexp.MustCompile(`^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$`)
	reYNull  = regexp.MustCompile(`^(?:~|null|Null|NULL|)$`)
)

func (c *yamlReader) scalar(n *yaml.Node) (any, error) {
	s := n.Value
	if n.Style&yaml.TaggedStyle != 0 {
		switch n.ShortTag() {
		case "!!str", "!unsafe":
			return s, nil
		case "!!null":
			return nil, nil
		case "!!bool":
			switch strings.ToLower(s) {
			case "yes", "true", "on":
				return true, nil
			case "no", "false", "off":
				return false, nil
			}
		case "!!int":
			if v, ok := yamlInt(s); ok {
				return v, nil
			}
		case "!!float":
			if v, ok := yamlFloat(s); ok {
				return v, nil
			}
		case "!vault", "!vault-encrypted":
			return nil, &ParseError{Source: c.source, Line: n.Line, Err: ErrUnsupported,
				Msg: "a value encrypted with ansible-vault, which Patrol cannot decrypt"}
		default:
			return nil, syntaxErr(c.source, n.Line, "unsupported YAML tag %s", n.Tag)
		}
		return nil, syntaxErr(c.source, n.Line, "%q is not a valid %s", s, n.ShortTag())
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return s, nil
	}
	switch {
	case reYBool.MatchString(s):
		return s[0] == 'y' || s[0] == 'Y' || s[0] == 't' || s[0] == 'T' || strings.EqualFold(s, "on"), nil
	case reYFloat.MatchString(s):
		if v, ok := yamlFloat(s); ok {
			return v, nil
		}
	case reYInt.MatchString(s):
		if v, ok := yamlInt(s); ok {
			return v, nil
		}
		return nil, syntaxErr(c.source, n.Line, "%q looks like an integer but is not one; quote it to keep it as text", s)
	case reYNull.MatchString(s):
		return nil, nil
	}
	return s, nil
}

// yamlInt converts an integer as PyYAML does: 0b binary, 0x hex, a leading
// 0 octal, a:b:c base 60.
func yamlInt(s string) (any, bool) {
	s = strings.ReplaceAll(s, "_", "")
	if s == "" {
		return nil, false
	}
	neg := s[0] == '-'
	if s[0] == '-' || s[0] == '+' {
		s = s[1:]
	}
	switch {
	case s == "0":
		return new(big.Int), true
	case strings.HasPrefix(s, "0b"):
		return parseBigInt(s[2:], 2, neg)
	case strings.HasPrefix(s, "0x"):
		return parseBigInt(s[2:], 16, neg)
	case strings.HasPrefix(s, "0"):
		return parseBigInt(s, 8, neg)
	case strings.Contains(s, ":"):
		total := new(big.Int)
		for _, part := range strings.Split(s, ":") {
			d, ok := parseBigInt(part, 10, false)
			if !ok {
				return nil, false
			}
			total.Mul(total, big.NewInt(60))
			total.Add(total, d)
		}
		if neg {
			total.Neg(total)
		}
		return total, true
	default:
		return parseBigInt(s, 10, neg)
	}
}

// yamlFloat converts a float as PyYAML does, base 60 included.
func yamlFloat(s string) (any, bool) {
	s = strings.ToLower(strings.ReplaceAll(s, "_", ""))
	if s == "" {
		return nil, false
	}
	sign := 1.0
	if s[0] == '-' {
		sign = -1
	}
	if s[0] == '-' || s[0] == '+' {
		s = s[1:]
	}
	switch {
	case s == ".inf":
		return sign * math.Inf(1), true
	case s == ".nan":
		return math.NaN(), true
	case strings.Contains(s, ":"):
		parts := strings.Split(s, ":")
		value, base := 0.0, 1.0
		for i := len(parts) - 1; i >= 0; i-- {
			d, err := strconv.ParseFloat(parts[i], 64)
			if err != nil && !isRangeErr(err) {
				return nil, false
			}
			value += d * base
			base *= 60
		}
		return sign * value, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return nil, false
	}
	return sign * f, true
}

// describe names a value's kind for errors.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the text %q", v)
	case bool, *big.Int, float64:
		return "the value " + renderScalar(v)
	case []any:
		return "a list"
	case *omap:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// groupWalker reads the YAML inventory structure, as Ansible's yaml plugin
// does: every top-level key is a group; a group maps to hosts, vars and
// children, each a mapping; a child is a group again.
type groupWalker struct {
	inv    *Inventory
	source string
	work   int // groups and host patterns visited, to bound alias repetition
}

// walkFactor bounds the groups and host patterns one YAML inventory may
// make Patrol visit, as a multiple of its host limit: aliases can repeat a
// subtree many times.
const walkFactor = 4

func (w *groupWalker) inventory(root any) error {
	if root == nil {
		return nil
	}
	m, ok := root.(*omap)
	if !ok {
		return syntaxErr(w.source, 0, "a YAML inventory is a mapping of group names, not %s", describe(root))
	}
	if p, ok := m.get("plugin"); ok && p != nil {
		name, _ := render(p)
		i, _ := m.find("plugin")
		return &ParseError{Source: w.source, Line: m.lines[i], Err: ErrUnsupported, Msg: fmt.Sprintf(
			"this is the configuration of inventory plugin %q, which Patrol cannot run; "+
				"export the inventory with `ansible-inventory -i %s --list > inventory.json` and use that", name, w.source)}
	}
	for i := range m.names {
		if _, err := w.group(m.keys[i], m.vals[i], m.lines[i]); err != nil {
			return err
		}
	}
	return nil
}

func (w *groupWalker) group(key, data any, line int) (*group, error) {
	at := pos{w.source, line}
	if w.work++; w.work > walkFactor*w.inv.maxHosts {
		return nil, &ParseError{Source: w.source, Line: line, Err: ErrTooMany,
			Msg: "the inventory repeats groups through aliases too many times"}
	}
	name, ok := key.(string)
	if !ok {
		return nil, syntaxErr(w.source, line, "group name %s must be text; quote it", renderKey(key))
	}
	g, err := w.inv.addGroup(name, at)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return g, nil
	}
	m, ok := data.(*omap)
	if !ok {
		return nil, syntaxErr(w.source, line, "group %q must map to hosts, vars or children, not %s", name, describe(data))
	}
	for i, section := range m.names {
		val := m.vals[i]
		sat := pos{w.source, m.lines[i]}
		if s, isStr := val.(string); isStr && (section == "hosts" || section == "vars" || section == "children") {
			one := newOmap() // Ansible reads "hosts: web1" as "hosts: {web1: }"
			one.set(s, nil, sat.line)
			val = one
		}
		if val == nil {
			continue
		}
		entries, ok := val.(*omap)
		if !ok {
			if section == "hosts" || section == "vars" || section == "children" {
				return nil, syntaxErr(w.source, sat.line, "%s of group %q must be a mapping, not %s", section, name, describe(val))
			}
			return nil, syntaxErr(w.source, sat.line, "unexpected key %q in group %q: a group has only hosts, vars and children", section, name)
		}
		switch section {
		case "vars":
			for j := range entries.names {
				if err := setGroupVar(g, entries.keys[j], entries.vals[j], pos{w.source, entries.lines[j]}); err != nil {
					return nil, err
				}
			}
		case "children":
			for j := range entries.names {
				child, err := w.group(entries.keys[j], entries.vals[j], entries.lines[j])
				if err != nil {
					return nil, err
				}
				if err := w.inv.addChild(g, child); err != nil {
					return nil, syntaxErr(w.source, entries.lines[j], "%v", err)
				}
			}
		case "hosts":
			for j := range entries.names {
				if err := w.hosts(g, entries.keys[j], entries.vals[j], pos{w.source, entries.lines[j]}); err != nil {
					return nil, err
				}
			}
		default:
			return nil, syntaxErr(w.source, sat.line, "unexpected key %q in group %q: a group has only hosts, vars and children", section, name)
		}
	}
	return g, nil
}

// hosts reads one entry of a group's hosts: a host pattern and its
// variables.
func (w *groupWalker) hosts(g *group, key, vars any, at pos) error {
	if w.work++; w.work > walkFactor*w.inv.maxHosts {
		return &ParseError{Source: at.source, Line: at.line, Err: ErrTooMany,
			Msg: "the inventory repeats hosts through aliases too many times"}
	}
	pattern, ok := key.(string)
	if !ok {
		return syntaxErr(at.source, at.line, "host pattern %s must be text; quote it", renderKey(key))
	}
	names, port, err := expandHostPattern(pattern, false, w.inv.maxHosts)
	if err != nil {
		var tb *tooBigError
		if errors.As(err, &tb) {
			return &ParseError{Source: at.source, Line: at.line, Err: ErrTooMany, Msg: err.Error()}
		}
		return syntaxErr(at.source, at.line, "%v", err)
	}
	var m *omap
	switch v := vars.(type) {
	case *omap:
		m = v
	default:
		if !falsy(vars) { // Ansible reads "web1: ''" as "web1: {}"
			return syntaxErr(at.source, at.line, "host %q must map to its variables, not %s", pattern, describe(vars))
		}
	}
	for _, name := range names {
		h, err := w.inv.addHost(name, g, port, at)
		if err != nil {
			return err
		}
		if m != nil {
			for i := range m.names {
				h.vars.set(m.keys[i], m.vals[i], m.lines[i])
			}
		}
	}
	return nil
}

// falsy reports whether Python would read v as false.
func falsy(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case bool:
		return !v
	case *big.Int:
		return v.Sign() == 0
	case float64:
		return v == 0
	case []any:
		return len(v) == 0
	case *omap:
		return v.len() == 0
	}
	return false
}
