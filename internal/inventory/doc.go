// Package inventory reads the hosts a check runs against: Patrol's plain
// host list, and Ansible's inventories (INI, YAML, JSON, a directory of
// them, with group_vars/ and host_vars/), read as Ansible reads them.
//
// Load reads a file or directory into an Inventory; Inventory.Hosts lists
// every host and Inventory.Select the hosts an Ansible host pattern names
// (patrol's --limit). ParseFile is Load then Hosts.
//
// # Plain host list
//
// One host per line:
//
//	# web tier
//	web1                      # name only: Port is 0, the check decides
//	web2:8080                 # name and port
//	10.0.0.7:22
//	[2001:db8::1]:443         # IPv6 with a port goes in brackets
//	2001:db8::2               # bare IPv6 without a port is fine too
//	db1:5432 zone=dc1 role=db # trailing key=value words become Host.Vars
//
// Surrounding whitespace is trimmed and blank lines are skipped. A '#' at the
// start of a line, or after whitespace, starts a comment that runs to the end
// of the line ("web#1" is not a comment, and not a valid name either).
//
// Variables follow the host, separated by whitespace. A variable name starts
// with a letter or '_' and continues with letters, digits and '_', so that a
// check template can write {{.Vars.zone}}. The value runs from the first '='
// to the end of the word and may be empty ("zone="); it cannot contain
// whitespace. A name may appear once per line.
//
// Parse stops at the first problem and reports it as a *ParseError of the form
//
//	inventory.txt:7: invalid port "99999" (must be 1-65535)
//
// It refuses ports outside 1-65535, an empty host (":22"), a '[' without its
// ']', characters that cannot be in a host name (control characters, '/',
// anything but letters, digits, '-', '.' and '_' outside an IP address),
// malformed variables, and the same host listed twice (compared without
// regard to case, as DNS does): a check would then run twice against one
// host, which is never what the operator meant. An inventory with no hosts
// is refused with ErrEmpty, and one with more than MaxHosts with ErrTooMany.
//
// Ansible reads a plain list as an INI file without sections, and where
// both read a line they agree on the address, the port and the variables,
// and put the host in no group ("ungrouped"). They differ in four ways,
// where Patrol keeps the plain reading that existing lists rely on: the
// host's Name is the whole word ("web1:8080", where Ansible names the host
// web1), so the same address may be listed on two ports; a host listed
// twice is refused; '#' inside a word is not a comment; and a value is the
// text written (Ansible reads f=1.50 as 1.5 and n=None as null).
//
// # Telling formats apart
//
// Load decides each file's format by the first rule that applies:
//
//  1. a directory is read as Ansible reads one (below);
//  2. a file starting with "#!" is an inventory script: refused
//     (ErrUnsupported), as Patrol runs no scripts;
//  3. the extension: .ini is INI, .yml and .yaml YAML, .json JSON;
//  4. the content: a first line (blank lines and '#' comments aside)
//     starting with '{' is JSON; one that is "---" or "%YAML", or a key
//     followed by ':' and a space or the line's end ("all:"), is YAML;
//     a [group] section header anywhere, or a line starting with ';', is
//     INI;
//  5. a file without sections is a plain list, unless a line uses what only
//     Ansible's INI has (a host range such as web[01:20], quotes, or an
//     ansible_* variable): then it is INI, as Ansible would read it.
//
// A JSON file is in the shape `ansible-inventory --list` prints when it has
// "_meta", or gives a group, its hosts or its children as arrays; otherwise
// it is read as a YAML inventory, as Ansible's yaml plugin reads .json
// files.
//
// A directory is read as Ansible reads one: its entries in name order,
// subdirectories too, skipping hidden files, group_vars, host_vars and
// vars_plugins, and the extensions Ansible ignores there by default (.ini,
// .txt, .md, .cfg, .retry, .orig, .bak, .swp, .rpm, .pyc, .pyo, .rst and
// ~). A file that is not valid in the format it is detected as is an
// error, where Ansible would skip it with a warning.
//
// # Ansible INI
//
//	alpha ansible_port=2222       # before any section: group "ungrouped"
//	[web]
//	web[01:20].example.com role=web
//	db-[a:f]                      # a letter range
//	www[0:20:5]                   # a step: www0, www5, ... www20
//	alias1 ansible_host=10.0.0.9 ansible_port=2200
//	web21:8080                    # host:port; [2001:db8::1]:22 for IPv6
//	[web:vars]
//	http_port=8080
//	[prod:children]
//	web
//
// Lines are read as Ansible's ini plugin reads them: host lines are split
// as a POSIX shell would (quotes group words, and '#' outside quotes starts
// a comment even inside a word: c=foo#bar sets c to "foo"); a value, on a
// host line or in a :vars section, is read as a Python literal when it is
// one (23, 1.5, True, None, 'text', [1, 2], {'k': 1}) and is its text
// otherwise (web, 017, yes); in a :vars section everything after the '='
// is the value, a trailing "# ..." included unless it follows a literal.
// A group may be named in [p:children] or [g:vars] before its own section.
//
// # Ansible YAML
//
//	all:
//	  vars: {region: eu}
//	  children:
//	    web:
//	      hosts:
//	        web[1:3].example.com:
//	        alias1: {ansible_host: 10.0.0.9}
//	      vars: {http_port: 8080}
//	      children: {canary: {hosts: {web4:}}}
//
// Top-level keys are groups; a group maps to hosts, vars and children, each
// a mapping (a single host may be written as text). Scalars are read as
// Ansible's PyYAML reads them (YAML 1.1): yes/no/on/off are booleans, 0755
// is octal, 1:30 is 90, 1e3 is text; anchors, aliases and merge keys (<<)
// work. Ansible's !unsafe is text; a !vault value is refused
// (ErrUnsupported), as is a plugin configuration ("plugin: aws_ec2").
//
// # Ansible JSON
//
// The shape inventory scripts and `ansible-inventory --list` print:
//
//	{"web": {"hosts": ["web1", "web2"], "vars": {"http_port": 8080}, "children": ["canary"]},
//	 "canary": ["web3"],
//	 "_meta": {"hostvars": {"web1": {"ansible_host": "10.0.0.1"}}}}
//
// Host names are taken as they are: no ranges, no ":port".
//
// # Groups, variables and precedence
//
// Every group is in "all"; a group with no parent is a child of "all", a
// host in no group other than "all" is in "ungrouped" (Ansible's
// reconcile). Host.Groups lists the groups a host is in, directly or
// through children, sorted: Ansible's group_names without "ungrouped".
//
// group_vars/NAME and host_vars/NAME beside the inventory file (inside it
// for a directory) are read for every group and host: the first of NAME (a
// file or a directory), NAME.yml, NAME.yaml, NAME.json that exists; a
// directory's files in name order, recursively, skipping hidden files and
// those ending in ~ or with another extension.
//
// A host's variables are merged as Ansible's default precedence merges
// them, each layer replacing the variables it sets:
//
//  1. group "all" in the inventory,
//  2. the host's other groups in the inventory, shallowest first (by depth
//     below "all", then ansible_group_priority, then name), so a child
//     group's value wins over its parent's,
//  3. group_vars/all,
//  4. group_vars/ of the host's other groups, in the same order,
//  5. the host in the inventory (ansible_port from "name:port" included),
//  6. host_vars/ of the host.
//
// As in Ansible, group_vars/all therefore wins over a group's variables
// written in the inventory file. ansible_group_priority orders groups and
// is not itself a variable. Ansible's inventory_file and inventory_dir are
// not included.
//
// Host.Vars holds each value as text: strings as they are; numbers, true
// and false as Ansible prints them in a template (8080, 1.5, True, False),
// null as ""; lists and mappings as compact JSON with keys in the order
// written ({"a":1,"b":["x","y"]}). Address is ansible_host, else the host
// name; Port is ansible_port, else 0. Both are checked: an address must be
// a host name or an IP address (Patrol renders no Jinja templates), a port
// a number from 1 to 65535.
//
// # Host patterns
//
// Select reads Ansible's host patterns; see its documentation. Patrol
// differs from Ansible in two places: regular expressions (~) use Go's
// RE2 syntax, and a pattern naming localhost does not make an implicit
// localhost.
//
// # Order
//
// Hosts lists hosts in the order Ansible lists group "all": hosts listed
// under "all" itself, then "ungrouped", then each group's own hosts, the
// groups taken level by level below "all" in the order they were read.
// Slices (web[0:2]) count in the same order. Ansible walks the levels
// below the second in an order it does not define; Patrol takes each
// level's groups in the order they were read.
//
// # Limits and what else is refused
//
// A host range making more than MaxHosts hosts, or an inventory holding
// more, is refused with ErrTooMany before anything is expanded. Where
// Ansible is lenient Patrol refuses with an error naming the file, the
// line and the problem: a range whose end comes before its begin (Ansible
// makes no host), letter ranges of more than one letter, the same key
// twice in one YAML or JSON mapping (Ansible keeps the last), a YAML group
// holding keys other than hosts, vars and children (Ansible warns), a
// [g:vars] or [p:children] naming a group defined nowhere, a loop of
// groups, and an address or port that cannot be connected to.
package inventory
