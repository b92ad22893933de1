package inventory

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
)

func TestPyFloatRepr(t *testing.T) {
	tests := map[float64]string{
		1:                    "1.0",
		1.5:                  "1.5",
		0.1:                  "0.1",
		-2.25:                "-2.25",
		0.0001:               "0.0001",
		0.00001:              "1e-05",
		1.5e-5:               "1.5e-05",
		1e15:                 "1000000000000000.0",
		1e16:                 "1e+16",
		1.2345e20:            "1.2345e+20",
		123456789.123:        "123456789.123",
		math.Copysign(0, -1): "-0.0",
		math.Inf(1):          "inf",
		math.Inf(-1):         "-inf",
		math.MaxFloat64:      "1.7976931348623157e+308",
		5e-324:               "5e-324",
		0.30000000000000004:  "0.30000000000000004",
		9007199254740993.0:   "9007199254740992.0",
	}
	for f, want := range tests {
		if got := pyFloatRepr(f); got != want {
			t.Errorf("pyFloatRepr(%v) = %s, want %s", f, got, want)
		}
	}
	if got := pyFloatRepr(math.NaN()); got != "nan" {
		t.Errorf("pyFloatRepr(NaN) = %s", got)
	}
}

func TestRender(t *testing.T) {
	m := newOmap()
	m.set("b", []any{big.NewInt(1), "x<y", nil, true, math.Inf(1)}, 0)
	m.set("a", 2.5, 0)
	m.set(big.NewInt(3), false, 0)
	tests := []struct {
		v    any
		want string
	}{
		{"text", "text"},
		{nil, ""},
		{true, "True"},
		{false, "False"},
		{big.NewInt(-42), "-42"},
		{2.0, "2.0"},
		{[]any{}, "[]"},
		{m, `{"b":[1,"x<y",null,true,"inf"],"a":2.5,"3":false}`},
	}
	for _, tt := range tests {
		got, err := render(tt.v)
		if err != nil || got != tt.want {
			t.Errorf("render(%#v) = %q, %v; want %q", tt.v, got, err, tt.want)
		}
	}
	// A value that renders too large, as an alias bomb would.
	big := []any{strings.Repeat("x", 1000)}
	for i := 0; i < 12; i++ {
		big = []any{big, big}
	}
	if _, err := render(big); !errors.Is(err, errValueTooLarge) {
		t.Errorf("render of a huge value: %v, want errValueTooLarge", err)
	}
}

func TestOmap(t *testing.T) {
	m := newOmap()
	for i := 0; i < 20; i++ { // past omapScan: indexed
		m.set(big.NewInt(int64(i%15)), i, i)
	}
	if m.len() != 15 {
		t.Fatalf("len = %d, want 15", m.len())
	}
	if v, ok := m.get("3"); !ok || v != 18 {
		t.Errorf(`get("3") = %v, %v; want 18 (replaced in place)`, v, ok)
	}
	if m.names[3] != "3" || m.lines[3] != 3 {
		t.Errorf("key 3 moved: names %v", m.names)
	}
	var nilMap *omap
	if _, ok := nilMap.get("x"); ok || nilMap.len() != 0 {
		t.Error("a nil omap is not empty")
	}
}
