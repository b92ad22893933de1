package inventory

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"web1\nweb2:22\n",
		"[::1]:8080\n::1\n2001:db8::1\n[fe80::1%eth0]:22",
		"# c\n\nweb1:80 zone=dc1 role=web # t\n",
		"web1:99999", ":22", "[::1", "[::1]x", "a:b:c", "web 1", "w=1 x", "web1 a=1 a=2",
		"\uFEFFweb1\r\n", "web1\nWEB1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		hosts, err := Parse(strings.NewReader(in), "fuzz")
		if err != nil {
			if hosts != nil {
				t.Fatalf("Parse returned hosts and error %v", err)
			}
			return
		}
		if len(hosts) == 0 {
			t.Fatal("Parse returned no hosts and no error")
		}
		for _, h := range hosts {
			if h.Name == "" || h.Address == "" {
				t.Fatalf("host %+v has an empty Name or Address", h)
			}
			if h.Port < 0 || h.Port > 65535 {
				t.Fatalf("host %+v has port out of range", h)
			}
			if strings.ContainsAny(h.Address, "[]") {
				t.Fatalf("host %+v has brackets in Address", h)
			}
		}
	})
}
