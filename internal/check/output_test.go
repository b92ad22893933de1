package check

import (
	"slices"
	"strings"
	"testing"
)

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"empty", 4, nil, ""},
		{"fits", 4, []string{"ab", "cd"}, "abcd"},
		{"wraps", 4, []string{"abc", "def"}, "[patrol: first 2 bytes of output dropped, last 4 kept]\ncdef"},
		{"wraps twice", 4, []string{"abc", "def", "ghij", "k"}, "[patrol: first 7 bytes of output dropped, last 4 kept]\nhijk"},
		{"one big write", 4, []string{"a", "0123456789"}, "[patrol: first 7 bytes of output dropped, last 4 kept]\n6789"},
		{"cut character", 4, []string{"ééé"}, "[patrol: first 2 bytes of output dropped, last 4 kept]\néé"},
		{"cut character mid-rune", 3, []string{"ééé"}, "[patrol: first 3 bytes of output dropped, last 3 kept]\n\uFFFDé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTailBuffer(tt.max)
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := b.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTailBufferByteAtATime compares the ring with the plain tail of
// everything written.
func TestTailBufferByteAtATime(t *testing.T) {
	var all strings.Builder
	b := newTailBuffer(7)
	for i := range 100 {
		chunk := strings.Repeat(string(rune('a'+i%26)), i%9)
		b.Write([]byte(chunk))
		all.WriteString(chunk)
		got := b.String()
		if i := strings.IndexByte(got, '\n'); i >= 0 {
			got = got[i+1:]
		}
		if want := all.String()[max(0, all.Len()-7):]; got != want {
			t.Fatalf("after %d writes: tail %q, want %q", i+1, got, want)
		}
	}
}

func TestLastLine(t *testing.T) {
	tests := map[string]string{
		"":                               "",
		"one":                            "one",
		"one\ntwo\n":                     "two",
		"one\ntwo\n\n  \t\n":             "two",
		"a\r\nwarning:\tdisk\x1b[0m\r\n": "warning: disk [0m",
		strings.Repeat("é", 150):         strings.Repeat("é", 100) + "...",
	}
	for in, want := range tests {
		if got := lastLine(in); got != want {
			t.Errorf("lastLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitWords(t *testing.T) {
	tests := map[string][]string{
		"":                                  nil,
		"  a  b\tc\n":                       {"a", "b", "c"},
		`-w {{index .Vars "a b"}} x`:        {"-w", `{{index .Vars "a b"}}`, "x"},
		`--zone={{ .Vars.zone }}/{{.Port}}`: {`--zone={{ .Vars.zone }}/{{.Port}}`},
		"}} a":                              {"}}", "a"},
	}
	for in, want := range tests {
		if got := splitWords(in); !slices.Equal(got, want) {
			t.Errorf("splitWords(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnescape(t *testing.T) {
	tests := map[string]string{
		`plain`:         "plain",
		`PING\r\n`:      "PING\r\n",
		`a\tb\\n`:       "a\tb\\n",
		`\x00\x41\xff`:  "\x00A\xff",
		`\xZZ \q \`:     `\xZZ \q \`,
		`\x4`:           `\x4`,
		`{{.Host}}\r\n`: "{{.Host}}\r\n",
	}
	for in, want := range tests {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvName(t *testing.T) {
	tests := map[string]string{"zone": "ZONE", "mount-point": "MOUNT_POINT", "a.b c": "A_B_C", "x1": "X1", "é": "__"}
	for in, want := range tests {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}
