package inventory

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestExpandRanges(t *testing.T) {
	tests := []struct {
		in   string
		want string // names joined by spaces
	}{
		{"web", "web"},
		{"web[1:3]", "web1 web2 web3"},
		{"web[01:03].lan", "web01.lan web02.lan web03.lan"},
		{"web[8:10]", "web8 web9 web10"},
		{"web[08:10]", "web08 web09 web10"},
		{"web[001:100:33]", "web001 web034 web067 web100"},
		{"db-[a:c]", "db-a db-b db-c"},
		{"h[y:B]", "hy hz hA hB"},
		{"h[a:e:2]", "ha hc he"},
		{"[0:20:5]", "0 5 10 15 20"},
		{"h[:2]", "h0 h1 h2"},
		{"x[1:2]-[a:b]", "x1-a x1-b x2-a x2-b"},
		{"10.0.[0:1].[1:2]", "10.0.0.1 10.0.0.2 10.0.1.1 10.0.1.2"},
		{"h[5:5]", "h5"},
	}
	for _, tt := range tests {
		got, err := expandRanges(tt.in, MaxHosts)
		if err != nil {
			t.Errorf("expandRanges(%q): %v", tt.in, err)
			continue
		}
		if s := strings.Join(got, " "); s != tt.want {
			t.Errorf("expandRanges(%q) = %s, want %s", tt.in, s, tt.want)
		}
	}
}

func TestExpandRangesInvalid(t *testing.T) {
	tests := []struct{ in, want string }{
		{"h[1:3", `host pattern "h[1:3" has '[' without ']'; write a range as web[01:20]`},
		{"h]1:3[", `host pattern "h]1:3[" has ']' before '['`},
		{"h[1:2]x]", `host pattern "h[1:2]x]" has ']' without '['`},
		{"h[3:1]", `host pattern "h[3:1]": range [3:1] is empty: write the smaller bound first`},
		{"h[1]", `host pattern "h[1]": range [1] must be [begin:end] or [begin:end:step]`},
		{"h[1:2:3:4]", `host pattern "h[1:2:3:4]": range [1:2:3:4] must be [begin:end] or [begin:end:step]`},
		{"h[1:]", `host pattern "h[1:]": range [1:] must give an end, e.g. [01:20]`},
		{"h[01:100]", `host pattern "h[01:100]": range [01:100]: zero-padded bounds must have equal length, e.g. [01:20]`},
		{"h[ab:cd]", `host pattern "h[ab:cd]": range [ab:cd]: bounds must be numbers ([01:20]) or single letters ([a:f])`},
		{"h[a:1]", `host pattern "h[a:1]": range [a:1]: bounds must be numbers ([01:20]) or single letters ([a:f])`},
		{"h[z:a]", `host pattern "h[z:a]": range [z:a]: begin must come before end (a..z then A..Z)`},
		{"h[1:3:0]", `host pattern "h[1:3:0]": range [1:3:0]: step "0" must be a positive number`},
		{"h[1:3:-1]", `host pattern "h[1:3:-1]": range [1:3:-1]: step "-1" must be a positive number`},
		{"h[1:9999999999]", `host pattern "h[1:9999999999]": range [1:9999999999]: bounds above 999999999 are not supported`},
	}
	for _, tt := range tests {
		got, err := expandRanges(tt.in, MaxHosts)
		if err == nil || err.Error() != tt.want {
			t.Errorf("expandRanges(%q) = %q, %v\nwant error %s", tt.in, got, err, tt.want)
		}
	}
}

func TestExpandRangesLimit(t *testing.T) {
	for _, in := range []string{"h[0:1000000]", "h[0:999][0:1000]", "h[1:1000][1:1000][1:2]"} {
		_, err := expandRanges(in, MaxHosts)
		var tb *tooBigError
		if !errors.As(err, &tb) {
			t.Errorf("expandRanges(%q) = %v, want a tooBigError", in, err)
		} else if want := fmt.Sprintf("host pattern %q makes more than 1000000 hosts; split the inventory", in); err.Error() != want {
			t.Errorf("expandRanges(%q) error %q, want %q", in, err, want)
		}
	}
	got, err := expandRanges("h[1:1000][1:1000]", MaxHosts)
	if err != nil || len(got) != MaxHosts || got[MaxHosts-1] != "h10001000" {
		t.Errorf("expandRanges of exactly MaxHosts: %d hosts, %v", len(got), err)
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port int
		ok   bool
	}{
		{"web1", "web1", -1, true},
		{"web1:22", "web1", 22, true},
		{"web1.example.com:2222", "web1.example.com", 2222, true},
		{"10.0.0.1", "10.0.0.1", -1, true},
		{"10.0.0.1:22", "10.0.0.1", 22, true},
		{"[2001:db8::1]:22", "2001:db8::1", 22, true},
		{"2001:db8::1", "2001:db8::1", -1, true},
		{"::1", "::1", -1, true},
		{"fe80::1%eth0", "fe80::1%eth0", -1, true},
		{"web[01:20]:22", "web[01:20]", 22, true},
		{"db-[a:f]", "db-[a:f]", -1, true},
		{"10.0.[0:3].1", "10.0.[0:3].1", -1, true},
		{"_web", "_web", -1, true},
		{"web_", "", -1, false},
		{"web-", "", -1, false},
		{"-web", "", -1, false},
		{"a..b", "", -1, false},
		{"web!1", "", -1, false},
		{"web1:", "", -1, false},
		{"web[ab:cd]", "", -1, false},
	}
	for _, tt := range tests {
		host, port, ok := parseAddress(tt.in)
		if host != tt.host || port != tt.port || ok != tt.ok {
			t.Errorf("parseAddress(%q) = %q, %d, %v; want %q, %d, %v", tt.in, host, port, ok, tt.host, tt.port, tt.ok)
		}
	}
}

func TestCheckAddress(t *testing.T) {
	for _, ok := range []string{"web1", "web-1.example.com", "10.0.0.1", "::1", "fe80::1%eth0", "under_score"} {
		if err := checkAddress(ok); err != nil {
			t.Errorf("checkAddress(%q): %v", ok, err)
		}
	}
	tests := []struct{ in, want string }{
		{"", "empty address"},
		{"{{ host }}", `"{{ host }}" is a Jinja template; Patrol does not render templates, write the address itself`},
		{"web 1", `"web 1" is not a host name or IP address: use only letters, digits, '-', '.' and '_'`},
		{"a:b", `"a:b" is not a host name or IP address`},
	}
	for _, tt := range tests {
		if err := checkAddress(tt.in); err == nil || err.Error() != tt.want {
			t.Errorf("checkAddress(%q) = %v, want %s", tt.in, err, tt.want)
		}
	}
}

func TestShlexSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"web1 a=1  b=2", []string{"web1", "a=1", "b=2"}},
		{`web1 x="a b" y='c d'`, []string{"web1", "x=a b", "y=c d"}},
		{`web1 x="it's" y='say "hi"'`, []string{"web1", "x=it's", `y=say "hi"`}},
		{`web1 x=a\ b`, []string{"web1", "x=a b"}},
		{`web1 x="a\"b\n"`, []string{"web1", `x=a"b\n`}},
		{`web1 x='a\b'`, []string{"web1", `x=a\b`}},
		{"web1 c=foo#bar d=1", []string{"web1", "c=foo"}},
		{"web1 # a comment", []string{"web1"}},
		{`web1 x="#not" y=''`, []string{"web1", "x=#not", "y="}},
		{`web1 ''`, []string{"web1", ""}},
		{"\tweb1\t", []string{"web1"}},
	}
	for _, tt := range tests {
		got, err := shlexSplit(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("shlexSplit(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for in, want := range map[string]string{`web1 x="a`: "no closing quotation", `web1 x\`: "no escaped character"} {
		if _, err := shlexSplit(in); err == nil || err.Error() != want {
			t.Errorf("shlexSplit(%q) error %v, want %s", in, err, want)
		}
	}
}
