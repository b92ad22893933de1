package logging

import (
	"bytes"
	"encoding/json"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestZapRoutesWarnAndAbove(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Config{Level: "debug", Format: FormatJSON, Out: &buf})
	if err != nil {
		t.Fatal(err)
	}
	z := Zap(l, zapcore.WarnLevel).Named("etcd-client").With(zap.String("endpoint", "127.0.0.1:2379"))
	z.Info("chatty info line")
	z.Warn("lease keepalive slow", zap.Int("ms", 120))

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("want exactly the warn line, got %d lines: %s", len(lines), buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatal(err)
	}
	if m["level"] != "warn" || m["message"] != "lease keepalive slow" || m["component"] != "etcd-client" ||
		m["endpoint"] != "127.0.0.1:2379" || m["ms"] != float64(120) {
		t.Fatalf("unexpected line: %v", m)
	}
}

func TestNewRejectsBadValues(t *testing.T) {
	if _, err := New(Config{Level: "loud"}); err == nil {
		t.Fatal("level loud accepted")
	}
	if _, err := New(Config{Format: "xml"}); err == nil {
		t.Fatal("format xml accepted")
	}
}

func TestCancelledCallsAreNotWarnings(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Config{Level: "info", Format: FormatJSON, Out: &buf})
	if err != nil {
		t.Fatal(err)
	}
	z := Zap(l, zapcore.WarnLevel)
	z.Warn("retrying of unary invoker failed", zap.String("error", "rpc error: code = Canceled desc = context canceled"))
	if buf.Len() != 0 {
		t.Fatalf("a cancelled call was logged at info or above: %s", buf.String())
	}
	z.Warn("retrying of unary invoker failed", zap.String("error", "rpc error: code = Unavailable desc = connection refused"))
	if !bytes.Contains(buf.Bytes(), []byte(`"level":"warn"`)) {
		t.Fatalf("a real failure was not logged: %q", buf.String())
	}
}
