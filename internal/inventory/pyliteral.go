package inventory

import (
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// pyLiteral reads s as Python's ast.literal_eval does, which is how Ansible
// reads a variable's value in an INI inventory: 23 is a number, 'a b' a
// string without its quotes, [1, 2] a list, True a bool, None null, and
// anything that is not a Python literal (web, 017, yes) stays the text it
// was. A Python comment may follow ("8080 # http").
//
// ok is false when s is not a literal Patrol can represent: then the caller
// keeps s as text. That is also what Ansible does for non-literals; for the
// literals Patrol does not represent (bytes, complex numbers, sets,
// Ellipsis, \N{...} escapes) it keeps the text where Ansible keeps a Python
// object.
func pyLiteral(s string) (v any, ok bool) {
	p := &pyParser{src: strings.TrimLeft(s, " \t")}
	defer func() {
		if r := recover(); r != nil {
			if _, bad := r.(pyFail); !bad {
				panic(r)
			}
			v, ok = nil, false
		}
	}()
	p.next()
	v = p.exprList(true)
	if p.tok.kind != tEOF {
		p.fail()
	}
	return v, true
}

// pyFail is what pyParser panics with to unwind on a non-literal.
type pyFail struct{}

type pyTokKind int

const (
	tEOF pyTokKind = iota
	tOp            // one of ()[]{},:+-
	tNum
	tStr
	tName
)

type pyTok struct {
	kind  pyTokKind
	op    byte
	val   any    // tNum: *big.Int or float64; tStr: string
	name  string // tName
	bytes bool   // tStr: a bytes literal
}

type pyParser struct {
	src   string
	pos   int
	depth int // open brackets, to bound nesting
	tok   pyTok
}

func (p *pyParser) fail() { panic(pyFail{}) }

var (
	pyImag  = regexp.MustCompile(`^(?:[0-9](?:_?[0-9])*\.(?:[0-9](?:_?[0-9])*)?|\.[0-9](?:_?[0-9])*|[0-9](?:_?[0-9])*)(?:[eE][-+]?[0-9](?:_?[0-9])*)?[jJ]`)
	pyFloat = regexp.MustCompile(`^(?:(?:[0-9](?:_?[0-9])*\.(?:[0-9](?:_?[0-9])*)?|\.[0-9](?:_?[0-9])*)(?:[eE][-+]?[0-9](?:_?[0-9])*)?|[0-9](?:_?[0-9])*[eE][-+]?[0-9](?:_?[0-9])*)`)
	pyInt   = regexp.MustCompile(`^(?:0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?0)*|[1-9](?:_?[0-9])*)`)
)

// maxLiteralLen bounds one number or string token.
const maxLiteralLen = 64 << 10

// next reads the next token into p.tok.
func (p *pyParser) next() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == ' ' || c == '\t' || c == '\f' {
			p.pos++
			continue
		}
		if c == '#' {
			p.pos = len(p.src)
			break
		}
		break
	}
	if p.pos >= len(p.src) {
		p.tok = pyTok{kind: tEOF}
		return
	}
	rest := p.src[p.pos:]
	c := rest[0]
	switch {
	case strings.IndexByte("()[]{},:+-", c) >= 0:
		p.pos++
		p.tok = pyTok{kind: tOp, op: c}
	case c >= '0' && c <= '9' || c == '.' && len(rest) > 1 && rest[1] >= '0' && rest[1] <= '9':
		p.number(rest)
	case c == '\'' || c == '"':
		p.str("")
	default:
		r, _ := utf8.DecodeRuneInString(rest)
		if !isIdentStart(r) {
			p.fail()
		}
		n := 0
		for n < len(rest) {
			r, size := utf8.DecodeRuneInString(rest[n:])
			if !isIdentPart(r) {
				break
			}
			n += size
		}
		name := rest[:n]
		if n < len(rest) && (rest[n] == '\'' || rest[n] == '"') {
			switch strings.ToLower(name) {
			case "r", "u", "b", "br", "rb", "f", "fr", "rf":
				p.pos += n
				p.str(strings.ToLower(name))
				return
			}
		}
		p.pos += n
		p.tok = pyTok{kind: tName, name: name}
	}
}

func isIdentStart(r rune) bool { return r == '_' || unicode.IsLetter(r) }
func isIdentPart(r rune) bool  { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

func (p *pyParser) number(rest string) {
	if pyImag.MatchString(rest) {
		p.fail() // a complex number
	}
	text, isFloat := pyFloat.FindString(rest), true
	if text == "" {
		text, isFloat = pyInt.FindString(rest), false
	}
	if text == "" || len(text) > maxLiteralLen {
		p.fail()
	}
	// Python refuses a number run into a name or digit ("1abc", "0777").
	if after := rest[len(text):]; after != "" {
		r, _ := utf8.DecodeRuneInString(after)
		if isIdentPart(r) || r == '.' {
			p.fail()
		}
	}
	p.pos += len(text)
	clean := strings.ReplaceAll(text, "_", "")
	if isFloat {
		f, err := strconv.ParseFloat(clean, 64)
		if err != nil && !isRangeErr(err) {
			p.fail()
		}
		p.tok = pyTok{kind: tNum, val: f}
		return
	}
	base, digits := 10, clean
	if len(clean) > 1 && clean[0] == '0' {
		switch clean[1] {
		case 'x', 'X':
			base, digits = 16, clean[2:]
		case 'o', 'O':
			base, digits = 8, clean[2:]
		case 'b', 'B':
			base, digits = 2, clean[2:]
		}
	}
	n, ok := parseBigInt(digits, base, false)
	if !ok {
		p.fail()
	}
	p.tok = pyTok{kind: tNum, val: n}
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// str reads a string literal at p.pos (after any prefix), and the literals
// adjacent to it, which Python joins.
func (p *pyParser) str(prefix string) {
	var (
		out     strings.Builder
		isBytes = strings.Contains(prefix, "b")
	)
	{
		if strings.Contains(prefix, "f") {
			p.fail() // an f-string is not a literal
		}
		raw := strings.Contains(prefix, "r")
		s := p.src[p.pos:]
		q := s[0]
		delim := s[:1]
		if strings.HasPrefix(s, strings.Repeat(string(q), 3)) {
			delim = s[:3]
		}
		i := len(delim)
		body := -1
		for i < len(s) {
			if s[i] == '\\' {
				i += 2
				continue
			}
			if strings.HasPrefix(s[i:], delim) {
				body = i
				break
			}
			i++
		}
		if body < 0 || body-len(delim) > maxLiteralLen {
			p.fail()
		}
		text := s[len(delim):body]
		if raw {
			out.WriteString(text)
		} else {
			out.WriteString(pyUnescape(p, text, isBytes))
		}
		p.pos += body + len(delim)
		if out.Len() > maxLiteralLen {
			p.fail()
		}
		// An adjacent literal continues this one.
		save := p.pos
		p.next()
		if p.tok.kind == tStr {
			if p.tok.bytes != isBytes {
				p.fail()
			}
			out.WriteString(p.tok.val.(string))
		} else {
			p.pos = save
		}
	}
	p.tok = pyTok{kind: tStr, val: out.String(), bytes: isBytes}
}

// pyUnescape decodes the backslash escapes of a non-raw string literal.
func pyUnescape(p *pyParser, s string, isBytes bool) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		c = s[i]
		switch c {
		case '\\', '\'', '"':
			b.WriteByte(c)
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			n, _ := strconv.ParseUint(s[i:j], 8, 32)
			b.WriteRune(rune(n))
			i = j - 1
		case 'x', 'u', 'U':
			width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			if isBytes && c != 'x' {
				b.WriteByte('\\')
				b.WriteByte(c)
				continue
			}
			if i+1+width > len(s) {
				p.fail()
			}
			n, err := strconv.ParseUint(s[i+1:i+1+width], 16, 32)
			if err != nil || n > unicode.MaxRune || n >= 0xD800 && n <= 0xDFFF {
				p.fail()
			}
			b.WriteRune(rune(n))
			i += width
		case 'N':
			p.fail() // named characters: Patrol has no table of names
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}

// exprList reads an expression, or a tuple of them when commas follow and
// tupleOK (a bare tuple "1, 2" is a literal at the top level).
func (p *pyParser) exprList(tupleOK bool) any {
	first := p.expr()
	if !tupleOK || p.tok.kind != tOp || p.tok.op != ',' {
		return first
	}
	items := []any{first}
	for p.tok.kind == tOp && p.tok.op == ',' {
		p.next()
		if p.tok.kind == tEOF || p.tok.kind == tOp && p.tok.op == ')' {
			break
		}
		items = append(items, p.expr())
	}
	return items
}

// expr reads one literal, with an optional sign on a number.
func (p *pyParser) expr() any {
	if p.tok.kind == tOp && (p.tok.op == '+' || p.tok.op == '-') {
		neg := p.tok.op == '-'
		p.next()
		v := p.atom()
		switch n := v.(type) {
		case *big.Int:
			if neg {
				v = new(big.Int).Neg(n)
			}
		case float64:
			if neg {
				v = -n
			}
		default:
			p.fail()
		}
		p.afterExpr()
		return v
	}
	v := p.atom()
	p.afterExpr()
	return v
}

// afterExpr refuses arithmetic: Python allows only 1+2j, a complex number.
func (p *pyParser) afterExpr() {
	if p.tok.kind == tOp && (p.tok.op == '+' || p.tok.op == '-') {
		p.fail()
	}
}

func (p *pyParser) atom() any {
	t := p.tok
	switch t.kind {
	case tNum:
		p.next()
		return t.val
	case tStr:
		if t.bytes {
			p.fail()
		}
		p.next()
		return t.val
	case tName:
		p.next()
		switch t.name {
		case "True":
			return true
		case "False":
			return false
		case "None":
			return nil
		}
		p.fail()
	case tOp:
		switch t.op {
		case '(':
			p.open()
			if p.tok.kind == tOp && p.tok.op == ')' {
				p.close(')')
				return []any{}
			}
			first := p.expr()
			if p.tok.kind == tOp && p.tok.op == ',' {
				items := []any{first}
				for p.tok.kind == tOp && p.tok.op == ',' {
					p.next()
					if p.tok.kind == tOp && p.tok.op == ')' {
						break
					}
					items = append(items, p.expr())
				}
				p.close(')')
				return items
			}
			p.close(')')
			return first
		case '[':
			p.open()
			items := []any{}
			for !(p.tok.kind == tOp && p.tok.op == ']') {
				items = append(items, p.expr())
				if p.tok.kind == tOp && p.tok.op == ',' {
					p.next()
					continue
				}
				break
			}
			p.close(']')
			return items
		case '{':
			p.open()
			m := newOmap()
			for !(p.tok.kind == tOp && p.tok.op == '}') {
				k := p.expr()
				switch k.(type) {
				case string, bool, nil, *big.Int, float64:
				default:
					p.fail() // unhashable, or a tuple JSON cannot key on
				}
				if p.tok.kind != tOp || p.tok.op != ':' {
					p.fail() // a set, or not a literal
				}
				p.next()
				m.set(k, p.expr(), 0)
				if p.tok.kind == tOp && p.tok.op == ',' {
					p.next()
					continue
				}
				break
			}
			p.close('}')
			return m
		}
	}
	p.fail()
	return nil
}

func (p *pyParser) open() {
	p.depth++
	if p.depth > maxDepth {
		p.fail()
	}
	p.next()
}

func (p *pyParser) close(op byte) {
	if p.tok.kind != tOp || p.tok.op != op {
		p.fail()
	}
	p.depth--
	p.next()
}
