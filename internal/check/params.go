package check

import (
	"fmt"
	"net/url"
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

func (p params) bool(name string) (bool, error) {
	v, ok := p.m[name]
	if !ok {
		return false, nil
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
