package inventory

import (
	"strings"
	"testing"
)

func TestPyLiteral(t *testing.T) {
	tests := []struct {
		in   string
		want string // rendered; "!" for not a literal
	}{
		{"23", "23"},
		{"  7", "7"},
		{"-5", "-5"},
		{"+5", "5"},
		{"- 5", "-5"},
		{"-(5)", "-5"},
		{"0", "0"},
		{"00", "0"},
		{"1_000", "1000"},
		{"0x1F", "31"},
		{"0o17", "15"},
		{"0b101", "5"},
		{"123456789012345678901234567890", "123456789012345678901234567890"},
		{"1.50", "1.5"},
		{"1.", "1.0"},
		{".5", "0.5"},
		{"1e3", "1000.0"},
		{"1E-7", "1e-07"},
		{"1e400", "inf"},
		{"True", "True"},
		{"False", "False"},
		{"None", ""},
		{"'a b'", "a b"},
		{`"it's"`, "it's"},
		{`'\x41\t\101\u00e9'`, "A\tAé"},
		{`'a\d'`, `a\d`},
		{`r'\n'`, `\n`},
		{`u'x'`, "x"},
		{`'a' "b"`, "ab"},
		{`'''tri"ple'''`, `tri"ple`},
		{"8080 # http", "8080"},
		{"[1, 'two', 3.0, None, True]", `[1,"two",3.0,null,true]`},
		{"[1, [2, [3]],]", "[1,[2,[3]]]"},
		{"[]", "[]"},
		{"(1, 2)", "[1,2]"},
		{"(1,)", "[1]"},
		{"(1)", "1"},
		{"()", "[]"},
		{"1, 2", "[1,2]"},
		{"{'k': 'v', 'n': 1}", `{"k":"v","n":1}`},
		{"{'a': 1, 'a': 2}", `{"a":2}`},
		{"{1: 'x', None: 'y'}", `{"1":"x","None":"y"}`},
		{"{}", "{}"},
		{"{'<a>': '&'}", `{"<a>":"&"}`},
		// Not Python literals: Ansible keeps the text.
		{"web", "!"},
		{"yes", "!"},
		{"017", "!"},
		{"1__0", "!"},
		{"1_", "!"},
		{"1abc", "!"},
		{"0x", "!"},
		{"1 2", "!"},
		{"[1 -2]", "!"},
		{"1+2", "!"},
		{"--1", "!"},
		{"-True", "!"},
		{"-'a'", "!"},
		{"", "!"},
		{"#only a comment", "!"},
		{"[", "!"},
		{"[1,", "!"},
		{"(1, 2", "!"},
		{"{'a' 1}", "!"},
		{"{[1]: 2}", "!"},
		{"'abc", "!"},
		{`'\x4'`, "!"},
		{`'\ud800'`, "!"},
		{`'\N{DASH}'`, "!"},
		{"f'x'", "!"},
		{"x'y'", "!"},
		{"a.b", "!"},
		{"$x", "!"},
		// Literals Patrol keeps as text: complex, bytes, sets, Ellipsis.
		{"1+2j", "!"},
		{"2j", "!"},
		{"b'x'", "!"},
		{"'a' b'b'", "!"},
		{"{1, 2}", "!"},
		{"set()", "!"},
		{"...", "!"},
		{strings.Repeat("[", 150) + strings.Repeat("]", 150), "!"},
		{strings.Repeat("9", 5000), "!"},
	}
	for _, tt := range tests {
		v, ok := pyLiteral(tt.in)
		got := "!"
		if ok {
			var err error
			if got, err = render(v); err != nil {
				t.Errorf("pyLiteral(%q): render: %v", tt.in, err)
				continue
			}
		}
		if got != tt.want {
			t.Errorf("pyLiteral(%.40q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestINIValue(t *testing.T) {
	// What is not a literal stays the text it was, untrimmed.
	for in, want := range map[string]any{"web": "web", "1.5": 1.5, "bar # c": "bar # c", "'q'": "q"} {
		if got := iniValue(in); got != want {
			t.Errorf("iniValue(%q) = %#v, want %#v", in, got, want)
		}
	}
}
