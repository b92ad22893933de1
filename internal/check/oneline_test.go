package check

import (
	"strings"
	"testing"
)

// FuzzOneLine: the fast path changes nothing about the result: every
// message comes out as the fields of what went in, joined by one space.
func FuzzOneLine(f *testing.F) {
	for _, s := range []string{"", "ok", "connect 10.0.0.1:22: connection refused", " lead", "trail ", "two  spaces",
		"line\nbreak", "tab\there", "nbsp\u00a0here", "nel\u0085", "\x7f", "a b c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := oneLine(s), strings.Join(strings.Fields(s), " "); got != want {
			t.Fatalf("oneLine(%q) = %q, want %q", s, got, want)
		}
	})
}
