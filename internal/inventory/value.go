package inventory

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A variable's value, as read from INI (Python literals), YAML or JSON, is
// one of:
//
//	string     text
//	bool       true, yes, True...
//	nil        null, ~, None
//	*big.Int   an integer (Python's are unbounded)
//	float64    a float
//	[]any      a list (also Python tuples)
//	*omap      a mapping, keys in the order written
//
// Values are shared between hosts once read and never modified.

// omap is a mapping that keeps its keys in the order they were written.
type omap struct {
	keys  []any          // the key values: a string, or another scalar
	names []string       // the keys rendered as text, what lookups use
	vals  []any          // values, parallel to keys
	lines []int          // the line each key was written on; 0 if unknown
	index map[string]int // names[i] -> i, once there are more than a few keys
}

// omapScan is how many keys an omap searches in order before it indexes
// them: most mappings in an inventory are small.
const omapScan = 8

func newOmap() *omap { return &omap{} }

// find returns the index of the key named name.
func (m *omap) find(name string) (int, bool) {
	if m == nil {
		return 0, false
	}
	if m.index != nil {
		i, ok := m.index[name]
		return i, ok
	}
	for i, n := range m.names {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// set adds or replaces key. A replaced key keeps its place, as a Python
// dict's does.
func (m *omap) set(key any, val any, line int) {
	name := renderKey(key)
	if i, ok := m.find(name); ok {
		m.vals[i] = val
		return
	}
	m.keys = append(m.keys, key)
	m.names = append(m.names, name)
	m.vals = append(m.vals, val)
	m.lines = append(m.lines, line)
	switch {
	case m.index != nil:
		m.index[name] = len(m.names) - 1
	case len(m.names) > omapScan:
		m.index = make(map[string]int, 2*len(m.names))
		for i, n := range m.names {
			m.index[n] = i
		}
	}
}

func (m *omap) get(name string) (any, bool) {
	i, ok := m.find(name)
	if !ok {
		return nil, false
	}
	return m.vals[i], true
}

func (m *omap) len() int {
	if m == nil {
		return 0
	}
	return len(m.names)
}

// maxValueLen bounds one variable's value as text. A larger one is refused:
// it would not fit in a task stored in etcd anyway, and YAML aliases can
// make a small file render to gigabytes.
const maxValueLen = 1 << 20

var errValueTooLarge = fmt.Errorf("value longer than %d KiB as text", maxValueLen>>10)

// render turns a value into the text Patrol stores in Host.Vars: what
// Ansible prints for {{ var }} for scalars (True, 1.5, "" for null), and
// compact JSON, keys in the order written, for lists and mappings.
func render(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case []any, *omap:
		b, err := appendJSON(nil, v)
		if err != nil {
			return "", err
		}
		return string(b), nil
	default:
		return renderScalar(v), nil
	}
}

// renderScalar renders a scalar as Python's str() does, but null as "" (as
// Ansible's templating does).
func renderScalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	case bool:
		if v {
			return "True"
		}
		return "False"
	case *big.Int:
		return v.String()
	case float64:
		return pyFloatRepr(v)
	default:
		return fmt.Sprint(v)
	}
}

// renderKey renders a mapping key; keys are scalars.
func renderKey(k any) string {
	if k == nil {
		return "None" // Python's str(None): a key, unlike a value, is never printed empty
	}
	return renderScalar(k)
}

// appendJSON appends v as compact JSON, failing once the result would pass
// maxValueLen.
func appendJSON(b []byte, v any) ([]byte, error) {
	if len(b) > maxValueLen {
		return nil, errValueTooLarge
	}
	var err error
	switch v := v.(type) {
	case nil:
		b = append(b, "null"...)
	case bool:
		b = strconv.AppendBool(b, v)
	case string:
		b = appendJSONString(b, v)
	case *big.Int:
		b = v.Append(b, 10)
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			b = appendJSONString(b, pyFloatRepr(v)) // JSON has no inf or nan
		} else {
			b = append(b, pyFloatRepr(v)...)
		}
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendJSON(b, e); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	case *omap:
		b = append(b, '{')
		for i, name := range v.names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, name)
			b = append(b, ':')
			if b, err = appendJSON(b, v.vals[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	default:
		return nil, fmt.Errorf("cannot render %T", v)
	}
	if len(b) > maxValueLen {
		return nil, errValueTooLarge
	}
	return b, nil
}

func appendJSONString(b []byte, s string) []byte {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // cannot fail for a string
	return append(b, strings.TrimSuffix(sb.String(), "\n")...)
}

// pyFloatRepr formats f as Python's repr() does: the shortest digits that
// read back as f, fixed-point between 1e-4 and 1e16 with at least one
// decimal ("1.0"), else exponent form ("1e+16", "1.5e-05").
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // "1.5e+16", "1e-05"
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if f != 0 && (exp < -4 || exp >= 16) {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// maxIntDigits is Python's limit on converting an int to decimal text
// (sys.int_info.default_max_str_digits); past it Python refuses a literal.
const maxIntDigits = 4300

// parseBigInt reads digits (underscores already removed) in base; ok is
// false when they are not valid or the number has more than maxIntDigits
// decimal digits.
func parseBigInt(digits string, base int, negative bool) (*big.Int, bool) {
	if digits == "" || len(digits) > maxIntDigits*4 {
		return nil, false
	}
	n, ok := new(big.Int).SetString(digits, base)
	if !ok {
		return nil, false
	}
	if base != 10 && n.BitLen() > maxIntDigits*3 { // about 4300*log2(10) bits
		return nil, false
	}
	if base == 10 && len(strings.TrimLeft(digits, "0")) > maxIntDigits {
		return nil, false
	}
	if negative {
		n.Neg(n)
	}
	return n, true
}

// checkName refuses a host or group name that is not valid UTF-8 or holds a
// control character.
func checkName(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s %q contains control character %q", what, s, r)
		}
	}
	return nil
}

// maxDepth bounds how deeply lists and mappings nest in a value.
const maxDepth = 100
