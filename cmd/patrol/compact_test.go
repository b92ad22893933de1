package main

import "testing"

func TestCompactHosts(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		max   int
		want  string
	}{
		{[]string{"web01", "web02", "web03", "db1"}, 10, "db1, web[01:03]"},
		{[]string{"web1", "web3", "web2", "web5"}, 10, "web5, web[1:3]"},
		{[]string{"10.0.0.1:22", "10.0.0.2:22"}, 10, "10.0.0.1:22, 10.0.0.2:22"},
		{[]string{"a", "b", "c"}, 2, "a, b (+1 more)"},
		{[]string{"web9", "web10"}, 10, "web10, web9"},
	} {
		if got := compactHosts(tc.hosts, tc.max); got != tc.want {
			t.Errorf("compactHosts(%v) = %q, want %q", tc.hosts, got, tc.want)
		}
	}
}
