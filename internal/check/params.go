package check

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// params reads the values of one check's params. Names are already known
// to be valid for the type; each method reports a malformed value as an
// error that wraps ErrBadParam and says what is expected.
type params struct {
	typ string
	m   map[string]string
}

func paramsFor(typ string, m map[string]string) params { return params{typ: typ, m: m} }

func (p params) bad(name, want string) error {
	return fmt.Errorf("%w: %s %s=%q: want %s", ErrBadParam, p.typ, name, p.m[name], want)
}

// duration reads a duration that must be positive, or at least zero if zeroOK.
func (p params) duration(name string, def time.Duration, zeroOK bool) (time.Duration, error) {
	v, ok := p.m[name]
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d == 0 && !zeroOK {
		if zeroOK {
			return 0, p.bad(name, "a duration such as 0s, 100ms or 2s")
		}
		return 0, p.bad(name, "a positive duration such as 5s or 500ms")
	}
	return d, nil
}

func (p params) bool(name string) (bool, error) { return p.boolDefault(name, false) }

// boolDefault reads true or false; def when the param is absent.
func (p params) boolDefault(name string, def bool) (bool, error) {
	v, ok := p.m[name]
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, p.bad(name, "true or false")
	}
	return b, nil
}

// template parses a templated param; nil if the param is absent. A value
// without any {{action}} is checked at once with literal, so a bad literal
// fails in New rather than on every host.
func (p params) template(name string, literal func(string) error, want string) (*template.Template, error) {
	v, ok := p.m[name]
	if !ok {
		return nil, nil
	}
	t, err := template.New(name).Option("missingkey=error").Parse(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s=%q: %v", ErrBadParam, p.typ, name, v, err)
	}
	if !strings.Contains(v, "{{") {
		if err := literal(v); err != nil {
			return nil, p.bad(name, want)
		}
	}
	return t, nil
}

// hostData is what param templates see; see the package documentation.
type hostData struct {
	Host    string
	Address string
	Port    int
	Vars    map[string]string
}

// render executes a param template for h. Errors are *HostError.
func render(t *template.Template, h inventory.Host) (string, error) {
	var b strings.Builder
	err := t.Execute(&b, hostData{Host: h.Name, Address: h.Address, Port: h.Port, Vars: h.Vars})
	if err != nil {
		return "", &HostError{Host: h.Name, Param: t.Name(), Err: err}
	}
	return b.String(), nil
}

// renderChecked renders t for h and checks the result with check. Errors
// are *HostError naming the param.
func renderChecked(t *template.Template, h inventory.Host, check func(string) error) (string, error) {
	s, err := render(t, h)
	if err != nil {
		return "", err
	}
	if err := check(s); err != nil {
		return "", &HostError{Host: h.Name, Param: t.Name(), Err: err}
	}
	return s, nil
}

// renderPort renders a port param for h; def (the host's port, say) when
// the param is absent.
func renderPort(t *template.Template, h inventory.Host, def int) (int, error) {
	if t == nil {
		return def, nil
	}
	s, err := renderChecked(t, h, checkPort)
	if err != nil {
		return 0, err
	}
	return parsePort(s)
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (must be 1-65535)", s)
	}
	return n, nil
}

func checkPort(s string) error {
	_, err := parsePort(s)
	return err
}

// checkURL accepts an absolute http or https URL with a host.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	if p := u.Port(); p != "" {
		if _, err := parsePort(p); err != nil {
			return fmt.Errorf("%q has port %s (must be 1-65535)", s, p)
		}
	}
	return nil
}

// int reads a whole number in [lo, hi].
func (p params) int(name string, def, lo, hi int, want string) (int, error) {
	v, ok := p.m[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		return 0, p.bad(name, want)
	}
	return n, nil
}

// regexp compiles a regular expression param; nil if the param is absent.
func (p params) regexp(name string) (*regexp.Regexp, error) {
	v, ok := p.m[name]
	if !ok {
		return nil, nil
	}
	re, err := regexp.Compile(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s=%q: want a regular expression (Go RE2 syntax): %v", ErrBadParam, p.typ, name, v, err)
	}
	return re, nil
}

// required reports a missing or empty param.
func (p params) required(name, want string) (string, error) {
	v := p.m[name]
	if v == "" {
		return "", fmt.Errorf("%w: %s check needs --param %s=NAME: %s", ErrBadParam, p.typ, name, want)
	}
	return v, nil
}

// words parses a param that is a list of words separated by spaces, each
// word a template rendered into exactly one argument. Spaces inside
// {{actions}} do not separate words, so {{index .Vars "a b"}} is one word;
// a value with spaces reaches the program as one argument. Nil if absent.
func (p params) words(name string) ([]*template.Template, error) {
	v, ok := p.m[name]
	if !ok {
		return nil, nil
	}
	var ts []*template.Template
	for i, w := range splitWords(v) {
		t, err := template.New(name).Option("missingkey=error").Parse(w)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s=%q: word %d: %v", ErrBadParam, p.typ, name, v, i+1, err)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// splitWords splits s at runs of white space outside {{ }}.
func splitWords(s string) []string {
	var (
		words []string
		cur   strings.Builder
		depth int
	)
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "{{"):
			depth++
			cur.WriteString("{{")
			i++
		case strings.HasPrefix(s[i:], "}}") && depth > 0:
			depth--
			cur.WriteString("}}")
			i++
		case depth == 0 && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'):
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(s[i])
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}

// renderWords renders each word template for h.
func renderWords(ts []*template.Template, h inventory.Host) ([]string, error) {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		s, err := render(t, h)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// unescape decodes the backslash escapes \r \n \t \\ and \xHH, so that a
// --param value typed in a shell can hold bytes the shell would not pass.
// Any other backslash is kept as it is.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case '\\':
			b.WriteByte('\\')
		case 'x':
			if n, err := strconv.ParseUint(s[min(i+2, len(s)):min(i+4, len(s))], 16, 8); err == nil && i+4 <= len(s) {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
			b.WriteByte('\\')
			continue
		default:
			b.WriteByte('\\')
			continue
		}
		i++
	}
	return b.String()
}
