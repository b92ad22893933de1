package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// patternFixture is an inventory whose "all" order is
// u1, web3, lb.example.com, 10.0.0.1, web1, web2, db1, db2.
const patternFixture = `
u1
[web]
web1
web2
web3
[db]
db1
db2
[prod:children]
web
db
[canary]
web3
[lb]
lb.example.com
10.0.0.1
`

func fixture(t *testing.T) *Inventory {
	t.Helper()
	inv, err := ParseINI(strings.NewReader(patternFixture), "fixture.ini")
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestSelect(t *testing.T) {
	inv := fixture(t)
	all := "u1 web3 lb.example.com 10.0.0.1 web1 web2 db1 db2"
	tests := []struct{ pattern, want string }{
		{"all", all},
		{"*", all},
		{"web", "web1 web2 web3"},
		{"prod", "web1 web2 web3 db1 db2"},
		{"web:db", "web1 web2 web3 db1 db2"},
		{"web,db", "web1 web2 web3 db1 db2"},
		{"db, web", "db1 db2 web1 web2 web3"},
		{"prod:&canary", "web3"},
		{"prod:!canary", "web1 web2 db1 db2"},
		{"!canary", "u1 lb.example.com 10.0.0.1 web1 web2 db1 db2"},
		{"&web", "web3 web1 web2"},
		{"web:!web1:db", "web2 web3 db1 db2"},
		{"web*", "web1 web2 web3"},
		{"web?", "web1 web2 web3"},
		{"web[!1]", "web2 web3"},
		{"[wd]b1", "db1"},
		{"*.example.com", "lb.example.com"},
		{"~web[12]", "web1 web2"},
		{"~(web|db)", "web1 web2 web3 db1 db2"},
		{"~.*1$", "u1 web1 db1 10.0.0.1"},
		{"10.0.0.1", "10.0.0.1"},
		{"lb:&10.0.0.1", "10.0.0.1"},
		{"ungrouped", "u1"},
		{"web[0]", "web1"},
		{"web[-1]", "web3"},
		{"web[0:1]", "web1 web2"},
		{"web[1:]", "web2 web3"},
		{"web[1:9]", "web2 web3"},
		{"web[0-1]", "web1 web2"},
		{"web[2:0]", "web3"}, // Ansible reads [n:0] as [n]
		{"prod[-2]", "db1"},
		{"web[0]:db[-1]", "web1 db2"},
		{"web[0],db[-1]", "web1 db2"},
		// web* matches group web and hosts web1..3, so it lists each host
		// twice, and slices count both, as Ansible does.
		{"web*[3]", "web1"},
	}
	for _, tt := range tests {
		got, err := inv.Select(tt.pattern)
		if err != nil {
			t.Errorf("Select(%q): %v", tt.pattern, err)
			continue
		}
		if s := strings.Join(names(got), " "); s != tt.want {
			t.Errorf("Select(%q) = %s\nwant %s", tt.pattern, s, tt.want)
		}
	}
}

func TestSelectInvalid(t *testing.T) {
	inv := fixture(t)
	dir := t.TempDir()
	tests := []struct {
		pattern, want string
		is            error
	}{
		{"nosuch", `inventory: no hosts match "nosuch"`, ErrNoMatch},
		{"web:&nosuch", `inventory: no hosts match "web:&nosuch"`, ErrNoMatch},
		{"web[5:9]", `inventory: no hosts match "web[5:9]"`, ErrNoMatch},
		{"web[3]", `inventory: bad host pattern "web[3]": web has 3 hosts, so there is no host [3]; the first is [0]`, ErrPattern},
		{"web[-4]", `inventory: bad host pattern "web[-4]": web has 3 hosts, so there is no host [-4]; the first is [0]`, ErrPattern},
		{"web[9:0]", `inventory: bad host pattern "web[9:0]": web has 3 hosts, so there is no host [9]; the first is [0]`, ErrPattern},
		{"~(", "inventory: bad host pattern \"~(\": invalid regular expression (Patrol uses Go's RE2 syntax, without lookarounds or backreferences): error parsing regexp: missing closing ): `^(?:()`", ErrPattern},
		{"web:!", `inventory: bad host pattern "!": nothing after "!"`, ErrPattern},
		{"@" + filepath.Join(dir, "nope"), `inventory: bad host pattern "@` + filepath.Join(dir, "nope") + `": cannot read the limit file: stat ` + filepath.Join(dir, "nope") + `: no such file or directory`, ErrPattern},
		{"@" + dir, `inventory: bad host pattern "@` + dir + `": a limit starting with @ must be a file, not a directory`, ErrPattern},
	}
	for _, tt := range tests {
		got, err := inv.Select(tt.pattern)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Select(%q) = %v, %v\nwant error %s", tt.pattern, names(got), err, tt.want)
		}
		if !errors.Is(err, tt.is) {
			t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
		}
	}
}

func TestSelectFile(t *testing.T) {
	inv := fixture(t)
	file := filepath.Join(t.TempDir(), "retry")
	if err := os.WriteFile(file, []byte("web[0]\n\n  !web1  \ndb2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for pattern, want := range map[string]string{"@" + file: "db2", "db1,@" + file: "db1 db2"} {
		got, err := inv.Select(pattern)
		if err != nil || strings.Join(names(got), " ") != want {
			t.Errorf("Select(%q) = %v, %v; want %s", pattern, names(got), err, want)
		}
	}
}

func TestSelectConcurrent(t *testing.T) {
	inv := fixture(t)
	want, _ := inv.Select("prod[1:3]:canary")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := inv.Select("prod[1:3]:canary")
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("concurrent Select = %v, %v; want %v", names(got), err, names(want))
			}
		}()
	}
	wg.Wait()
}

func TestGlob(t *testing.T) {
	tests := []struct {
		glob  string
		match []string
		not   []string
	}{
		{"web*", []string{"web", "web1", "web.x"}, []string{"we", "aweb"}},
		{"w?b", []string{"web", "wab"}, []string{"wb", "weeb"}},
		{"[a-c]x", []string{"ax", "cx"}, []string{"dx", "x"}},
		{"[!a-c]x", []string{"dx", "1x"}, []string{"ax", "x"}},
		{"[]]x", []string{"]x"}, []string{"x"}},
		{"[!]]x", []string{"ax"}, []string{"]x"}},
		{"[z-a]x", nil, []string{"zx", "ax", "x"}},
		{"a[b", []string{"a[b"}, []string{"ab"}},
		{"a.b+c", []string{"a.b+c"}, []string{"axb+c", "a.bbc"}},
		{"[-a]x", []string{"-x", "ax"}, []string{"bx"}},
		{"é*", []string{"éa"}, []string{"ea"}},
	}
	for _, tt := range tests {
		match, err := compileMatcher(tt.glob)
		if err != nil {
			t.Errorf("compileMatcher(%q): %v", tt.glob, err)
			continue
		}
		for _, s := range tt.match {
			if !match(s) {
				t.Errorf("%q does not match %q", tt.glob, s)
			}
		}
		for _, s := range tt.not {
			if match(s) {
				t.Errorf("%q matches %q", tt.glob, s)
			}
		}
	}
}

func TestSplitHostPattern(t *testing.T) {
	tests := map[string][]string{
		"a,b[1], c[2:3] , d": {"a", "b[1]", "c[2:3]", "d"},
		"a:b:&c:!d":          {"a", "b", "&c", "!d"},
		"web[0:2]:db":        {"web[0:2]", "db"},
		"a b":                {"a", "b"},
		"2001:db8::1":        {"2001:db8::1"},
		"web1:22":            {"web1:22"},
		"a:b,c":              {"a:b", "c"},
		" ":                  nil,
	}
	for in, want := range tests {
		if got := splitHostPattern(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitHostPattern(%q) = %q, want %q", in, got, want)
		}
	}
}
