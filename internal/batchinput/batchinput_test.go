package batchinput_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/batchinput"
	"github.com/patrol-dev/patrol/internal/inventory"
)

func TestApply(t *testing.T) {
	hosts := []inventory.Host{{Name: "web1"}, {Name: "web2"}}
	stored := func() ([]inventory.Host, error) { return hosts, nil }
	noop, tcp := "noop", "tcp"
	base := batchinput.Defaults()
	base.Check, base.Hosts = noop, hosts
	for _, c := range []struct {
		name   string
		base   batchinput.Input
		ch     batchinput.Change
		stored func() ([]inventory.Host, error)
		bad    string // "" when valid
		check  func(t *testing.T, in batchinput.Input)
	}{
		{name: "a new batch", base: batchinput.Defaults(), ch: batchinput.Change{Check: &noop, Hosts: hosts},
			check: func(t *testing.T, in batchinput.Input) {
				if in.Check != "noop" || len(in.Hosts) != 2 || in.Policy.MaxAttempts == 0 || in.Policy.TimeoutMS == 0 {
					t.Errorf("input %+v", in)
				}
			}},
		{name: "no check", base: batchinput.Defaults(), ch: batchinput.Change{Check: new(""), Hosts: hosts}, bad: "no check"},
		{name: "bad policy", base: base, ch: batchinput.Change{MaxAttempts: new(0)}, bad: "attempts"},
		{name: "bad max failures", base: base, ch: batchinput.Change{MaxFailures: new("lots")}, bad: "max failures"},
		{name: "bad param checked against the hosts given", base: base, ch: batchinput.Change{Params: map[string]string{"sleep": "soon"}, Hosts: hosts}, bad: "sleep"},
		{name: "changed params checked against the stored hosts", base: batchinput.Input{Check: noop, Policy: base.Policy},
			ch: batchinput.Change{Params: map[string]string{"sleep": "soon"}}, stored: stored, bad: "sleep"},
		{name: "a check that needs a param", base: base, ch: batchinput.Change{Check: &tcp}, stored: stored, bad: "port"},
		{name: "timeout kept, attempts changed", base: base, ch: batchinput.Change{MaxAttempts: new(5), Timeout: new(2 * time.Minute)},
			check: func(t *testing.T, in batchinput.Input) {
				if in.Policy.MaxAttempts != 5 || in.Policy.Timeout() != 2*time.Minute || in.Check != "noop" || len(in.Hosts) != 2 {
					t.Errorf("input %+v", in)
				}
			}},
		{name: "the stored hosts' error is returned as it is", base: batchinput.Input{Check: noop, Policy: base.Policy},
			ch: batchinput.Change{Check: &noop}, stored: func() ([]inventory.Host, error) { return nil, errors.New("etcd down") }, bad: "etcd down"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, err := batchinput.Apply(c.base, c.ch, c.stored)
			if c.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.check(t, in)
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.bad) {
				t.Fatalf("error %v, want one saying %q", err, c.bad)
			}
			var inv *batchinput.Invalid
			if c.bad == "etcd down" && errors.As(err, &inv) {
				t.Errorf("an error of stored is reported as invalid input: %v", err)
			}
			if c.bad != "etcd down" && !errors.As(err, &inv) {
				t.Errorf("invalid input is not *Invalid: %v", err)
			}
		})
	}
}
