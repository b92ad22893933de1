package check

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// tailBuffer keeps the last max bytes written to it and counts the rest:
// a command's last lines say why it failed, its first ones rarely do.
// It is safe for concurrent writers (an ssh session copies stdout and
// stderr from two goroutines).
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte // up to max bytes; once full, a ring whose oldest byte is at head
	head  int
	total int64 // bytes written, kept or not
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.total += int64(n)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		t.head = 0
		return n, nil
	}
	if room := t.max - len(t.buf); room > 0 {
		k := min(room, len(p))
		t.buf = append(t.buf, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 { // full: overwrite the oldest bytes
		k := copy(t.buf[t.head:], p)
		p = p[k:]
		t.head = (t.head + k) % t.max
	}
	return n, nil
}

// String returns the kept output, oldest byte first, led by a marker line
// when earlier output was dropped. Invalid UTF-8 (such as a character cut
// in half by the drop) becomes U+FFFD.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	if dropped := t.total - int64(len(t.buf)); dropped > 0 {
		fmt.Fprintf(&b, "[patrol: first %d bytes of output dropped, last %d kept]\n", dropped, len(t.buf))
	}
	b.Write(t.buf[t.head:])
	b.Write(t.buf[:t.head])
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// lastLine returns the last non-blank line of out, made safe for a
// one-line message: control characters become spaces, and it is cut to
// 200 bytes.
func lastLine(out string) string {
	out = strings.TrimRightFunc(out, unicode.IsSpace)
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	out = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, out)
	return cut(strings.TrimSpace(out), 200)
}

// snippet quotes up to max bytes of b as a Go string, so that what a host
// sent is shown whatever bytes it holds, on one line.
func snippet(b []byte, max int) string {
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// cut shortens s to at most max bytes without splitting a character.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8RuneStart(s[max]) {
		max--
	}
	return s[:max] + "..."
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// millis formats d as milliseconds with microsecond precision, e.g. "12.345".
func millis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}
