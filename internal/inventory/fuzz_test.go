package inventory

import (
	"errors"
	"reflect"
	"sort"
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

// fuzzMaxHosts bounds the hosts a fuzzed inventory may make, so that each
// input takes little time and memory; the real bound is tested elsewhere.
const fuzzMaxHosts = 10_000

// checkInventory checks what every successfully read inventory must hold.
func checkInventory(t *testing.T, inv *Inventory) {
	t.Helper()
	hosts := inv.Hosts()
	if len(hosts) == 0 || len(hosts) > fuzzMaxHosts {
		t.Fatalf("%d hosts", len(hosts))
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h.Name == "" || seen[h.Name] {
			t.Fatalf("host %+v: empty or repeated name", h)
		}
		seen[h.Name] = true
		if err := checkAddress(h.Address); err != nil {
			t.Fatalf("host %+v: %v", h, err)
		}
		if h.Port < 0 || h.Port > 65535 {
			t.Fatalf("host %+v has port out of range", h)
		}
		if !sort.StringsAreSorted(h.Groups) {
			t.Fatalf("host %+v: groups not sorted", h)
		}
		for _, g := range h.Groups {
			if g == "all" || g == "ungrouped" {
				t.Fatalf("host %+v lists group %s", h, g)
			}
		}
	}
	all, err := inv.Select("all")
	if err != nil || !reflect.DeepEqual(all, hosts) {
		t.Fatalf(`Select("all") = %v, %v; want Hosts()`, names(all), err)
	}
}

func FuzzParseINI(f *testing.F) {
	for _, seed := range []string{
		"web1\n[db]\ndb1 x=1\n",
		"[web]\nweb[01:03].example.com role=web\ndb-[a:c]:5432\nw[0:20:5]\n[web:vars]\nx = 'a b' # c\n",
		"[prod:children]\nweb\n[web]\nh ansible_host=10.0.0.1 ansible_port=22\n[prod:vars]\nansible_group_priority=3\n",
		"[2001:db8::1]:22\n::1\n10.0.0.1:80\nh l=[1,{'a':(2,3)}] f=1e3 s=\"x\\\"y\" c=a#b\n",
		"[a:children]\nb\n[b:children]\na\n", "[x:vars]\nk=v\n", "h[0:99999]\n", "h[1:3\n", "h:\n", "; c\n[ a ]\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		inv, err := parseLimited(strings.NewReader(in), "fuzz.ini", parseINI, fuzzMaxHosts)
		if err != nil {
			if inv != nil {
				t.Fatalf("inventory and error %v", err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) && !errors.Is(err, ErrEmpty) {
				t.Fatalf("error %v (%T) is neither a *ParseError nor ErrEmpty", err, err)
			}
			return
		}
		checkInventory(t, inv)
	})
}

func FuzzParseYAML(f *testing.F) {
	for _, seed := range []string{
		"all:\n  vars: {a: 1}\n  children:\n    web:\n      hosts:\n        web[1:3]:\n        'a:22': {ansible_host: 10.0.0.1}\n",
		"web:\n  hosts: web1\n  vars:\n    x: [yes, 0755, 1:30, 1e3, 1.0e+3, ~, !unsafe '{{x}}']\n",
		"b: &b {hosts: {h: }}\nweb:\n  <<: *b\n  children: {c: *b}\n",
		"a: &a [*a]\n", "- a\n", "plugin: x\n", "web: {hosts: {a: , a: }}\n", "x: !vault |\n  $ANSIBLE_VAULT\n",
		`{"_meta": {"hostvars": {"a": {"n": 1}}}, "web": {"hosts": ["a"], "children": ["db"]}, "db": ["b"]}`,
		`{"all": {"children": {"web": {"hosts": {"a": null}}}}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, parse := range []func(*Inventory, []byte, string) error{parseYAMLInventory, parseJSONInventory} {
			inv, err := parseLimited(strings.NewReader(in), "fuzz.yml", parse, fuzzMaxHosts)
			if err != nil {
				if inv != nil {
					t.Fatalf("inventory and error %v", err)
				}
				continue
			}
			checkInventory(t, inv)
		}
	})
}

func FuzzLimit(f *testing.F) {
	inv, err := ParseINI(strings.NewReader(patternFixture+"[deep:children]\nprod\ncanary\n[canary:vars]\nx=1\n"), "fixture.ini")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"all", "*", "web:db", "web,db", "prod:&canary", "prod:!canary", "!web", "&web", "web*", "~web[12]",
		"web[0]", "web[-1]", "web[0:1]", "web[1:]", "web[2:0]", "web[0-1]", "*.example.com", "10.0.0.1", "2001:db8::1",
		"~(", "web[99999999999999999999]", "[!a-c]*", "web[", "!", ":", ",,", "a b\tc",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		if strings.Contains(pattern, "@") {
			return // @file reads files; TestSelectFile covers it
		}
		got, err := inv.Select(pattern)
		if err != nil {
			if got != nil || !errors.Is(err, ErrPattern) && !errors.Is(err, ErrNoMatch) {
				t.Fatalf("Select(%q) = %v, %v", pattern, names(got), err)
			}
			return
		}
		seen := map[string]bool{}
		for _, h := range got {
			if seen[h.Name] {
				t.Fatalf("Select(%q) lists %s twice", pattern, h.Name)
			}
			seen[h.Name] = true
		}
		again, _ := inv.Select(pattern)
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("Select(%q) is not deterministic", pattern)
		}
	})
}
