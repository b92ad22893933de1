package inventory

import (
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Inventory is a read inventory: its hosts, its groups, and their
// variables. Build one with Load, or with ParseINI, ParseYAML or ParseJSON
// for a single source in memory. An Inventory is not modified after it is
// returned and may be used from several goroutines.
type Inventory struct {
	groups      []*group // in the order first read; "all" and "ungrouped" first
	groupByName map[string]*group
	hosts       []*host // in the order first read
	hostByName  map[string]*host
	maxHosts    int // MaxHosts; smaller in tests

	resolved []Host // every host, in the order of group "all"; host.idx indexes it
	walks    int    // walks hostsOf made, to mark the hosts each saw

	mu      sync.Mutex
	members map[*group][]int // a group's hosts as indexes into resolved; filled as Select needs them
}

// maxGroups bounds the groups of one inventory; each needs work to keep
// the group graph free of loops.
const maxGroups = 100_000

type group struct {
	name     string
	id       int     // order of creation
	hosts    []*host // direct members, in the order added
	children []*group
	parents  []*group
	vars     *omap // from the inventory source
	fileVars *omap // from group_vars/
	priority int   // ansible_group_priority, 1 by default
	depth    int   // longest path from "all"; set by finish
	at       pos   // where first read
}

type host struct {
	name     string
	groups   []*group // direct groups
	vars     *omap    // from the inventory source; includes ansible_port from "name:port"
	fileVars *omap    // from host_vars/
	at       pos      // where first read
	plain    bool     // read from a plain host list: address and port below apply
	addr     string   // plain: the address part of the name
	port     int      // plain: the port part of the name, 0 if none
	idx      int      // index in Inventory.resolved, -1 if not listed; set by finish
	seen     int      // the last walk of hostsOf that saw the host
}

// inGroup reports whether h is a direct member of g.
func (h *host) inGroup(g *group) bool {
	for _, hg := range h.groups {
		if hg == g {
			return true
		}
	}
	return false
}

// pos is where something was read, for errors.
type pos struct {
	source string
	line   int
}

func newInventory() *Inventory {
	inv := &Inventory{groupByName: map[string]*group{}, hostByName: map[string]*host{}, maxHosts: MaxHosts}
	all, _ := inv.addGroup("all", pos{})
	ungrouped, _ := inv.addGroup("ungrouped", pos{})
	inv.addChild(all, ungrouped)
	return inv
}

// addGroup returns the group name, creating it if it is new.
func (inv *Inventory) addGroup(name string, at pos) (*group, error) {
	if g, ok := inv.groupByName[name]; ok {
		return g, nil
	}
	if name == "" {
		return nil, syntaxErr(at.source, at.line, "empty group name")
	}
	if err := checkName("group name", name); err != nil {
		return nil, syntaxErr(at.source, at.line, "%v", err)
	}
	if len(inv.groups) >= maxGroups {
		return nil, &ParseError{Source: at.source, Line: at.line, Err: ErrTooMany,
			Msg: fmt.Sprintf("more than %d groups", maxGroups)}
	}
	g := &group{name: name, id: len(inv.groups), vars: newOmap(), priority: 1, at: at}
	inv.groups = append(inv.groups, g)
	inv.groupByName[name] = g
	return g, nil
}

// addHost returns the host name, creating it if it is new, and makes it a
// member of g unless g is nil. port (from "name:port"; -1 for none) sets
// ansible_port only when the host is created, as in Ansible.
func (inv *Inventory) addHost(name string, g *group, port int, at pos) (*host, error) {
	h, ok := inv.hostByName[name]
	if !ok {
		if name == "" {
			return nil, syntaxErr(at.source, at.line, "empty host name")
		}
		if err := checkName("host name", name); err != nil {
			return nil, syntaxErr(at.source, at.line, "%v", err)
		}
		if len(inv.hosts) >= inv.maxHosts {
			return nil, &ParseError{Source: at.source, Line: at.line, Err: ErrTooMany, Msg: fmt.Sprintf(
				"more than %d hosts; split the inventory into several jobs", inv.maxHosts)}
		}
		h = &host{name: name, vars: newOmap(), at: at}
		inv.hosts = append(inv.hosts, h)
		inv.hostByName[name] = h
		if port > 0 {
			h.vars.set("ansible_port", big.NewInt(int64(port)), at.line)
		}
	}
	if g != nil && !h.inGroup(g) {
		g.hosts = append(g.hosts, h)
		h.groups = append(h.groups, g)
	}
	return h, nil
}

// addChild makes child a child group of parent, refusing loops.
func (inv *Inventory) addChild(parent, child *group) error {
	if parent == child {
		return fmt.Errorf("group %q cannot be a child of itself", child.name)
	}
	for _, c := range parent.children {
		if c == child {
			return nil
		}
	}
	if inv.isAncestor(child, parent) {
		return fmt.Errorf("making %q a child of %q would make a loop of groups", child.name, parent.name)
	}
	parent.children = append(parent.children, child)
	child.parents = append(child.parents, parent)
	return nil
}

// isAncestor reports whether a is an ancestor of g.
func (inv *Inventory) isAncestor(a, g *group) bool {
	seen := map[*group]bool{}
	stack := append([]*group(nil), g.parents...)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if p == a {
			return true
		}
		if !seen[p] {
			seen[p] = true
			stack = append(stack, p.parents...)
		}
	}
	return false
}

// setGroupVar sets a group variable from the inventory source. As in
// Ansible, ansible_group_priority is not a variable: it orders groups of
// the same depth when their variables are merged.
func setGroupVar(g *group, key any, val any, at pos) error {
	if renderKey(key) == "ansible_group_priority" {
		n, err := pyIntValue(val)
		if err != nil {
			return syntaxErr(at.source, at.line, "group %q: ansible_group_priority %v", g.name, err)
		}
		g.priority = n
		return nil
	}
	g.vars.set(key, val, at.line)
	return nil
}

// pyIntValue converts v as Python's int() does for the values a priority
// can sensibly hold.
func pyIntValue(v any) (int, error) {
	switch v := v.(type) {
	case *big.Int:
		if v.IsInt64() && v.Int64() >= math.MinInt32 && v.Int64() <= math.MaxInt32 {
			return int(v.Int64()), nil
		}
	case float64:
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			return int(v), nil
		}
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= math.MinInt32 && n <= math.MaxInt32 {
			return n, nil
		}
	}
	s, _ := render(v)
	return 0, fmt.Errorf("%q is not a number", s)
}

// finish settles the inventory once every source is read: it puts groups
// without a parent under "all" and hosts without a group in "ungrouped",
// as Ansible's reconcile_inventory does, then resolves each host.
func (inv *Inventory) finish() error {
	all, ungrouped := inv.groupByName["all"], inv.groupByName["ungrouped"]
	for _, g := range inv.groups {
		if g != all && len(g.parents) == 0 {
			inv.addChild(all, g) // cannot loop: g has no parent
		}
	}
	// A host in "ungrouped" and in another group leaves "ungrouped"; so
	// does every host of it if "ungrouped" itself was made a child of some
	// group.
	nested := len(closure([]*group{ungrouped})) > 2
	for _, h := range inv.hosts {
		if h.inGroup(ungrouped) {
			others := nested
			for _, g := range h.groups {
				if g != all && g != ungrouped {
					others = true
					break
				}
			}
			if others {
				removeHost(ungrouped, h)
			}
		} else if len(h.groups) == 0 || len(h.groups) == 1 && h.groups[0] == all {
			inv.addHost(h.name, ungrouped, -1, h.at)
		}
	}
	setDepths(inv.groups, all)

	for _, h := range inv.hosts {
		h.idx = -1 // in no group, as a host of "ungrouped" is once "ungrouped" is nested
	}
	order := inv.hostsOf(all)
	inv.resolved = make([]Host, len(order))
	r := &resolver{all: all, ungrouped: ungrouped, sets: map[string]*groupSet{}}
	for i, h := range order {
		h.idx = i
		out, err := r.resolve(h)
		if err != nil {
			return err
		}
		inv.resolved[i] = out
	}
	inv.members = map[*group][]int{}
	return nil
}

func removeHost(g *group, h *host) {
	for i, m := range g.hosts {
		if m == h {
			g.hosts = append(g.hosts[:i:i], g.hosts[i+1:]...)
			break
		}
	}
	for i, m := range h.groups {
		if m == g {
			h.groups = append(h.groups[:i:i], h.groups[i+1:]...)
			break
		}
	}
}

// closure returns groups and all their ancestors, each once.
func closure(groups []*group) []*group {
	seen := map[*group]bool{}
	var out []*group
	stack := append([]*group(nil), groups...)
	for len(stack) > 0 {
		g := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[g] {
			continue
		}
		seen[g] = true
		out = append(out, g)
		stack = append(stack, g.parents...)
	}
	return out
}

// setDepths sets each group's depth: the longest path to it from "all",
// which is what Ansible's incremental depths come to. Groups are visited in
// topological order, so that each depth is final before its children's.
func setDepths(groups []*group, root *group) {
	indeg := make(map[*group]int, len(groups))
	for _, g := range groups {
		indeg[g] = len(g.parents)
		g.depth = 0
	}
	queue := []*group{root}
	for len(queue) > 0 {
		g := queue[0]
		queue = queue[1:]
		for _, c := range g.children {
			if d := g.depth + 1; d > c.depth {
				c.depth = d
			}
			if indeg[c]--; indeg[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
}

// hostsOf returns a group's hosts in Ansible's order: its own, then those
// of its children, then of their children, level by level, each host once.
// (Ansible walks the levels below the children in an order it does not
// define; Patrol takes each level's groups in the order they were added.)
func (inv *Inventory) hostsOf(g *group) []*host {
	inv.walks++
	var (
		out    []*host
		seenG  = map[*group]bool{g: true}
		level  = []*group{g}
		groups = []*group{g}
	)
	for len(level) > 0 {
		var next []*group
		for _, p := range level {
			for _, c := range p.children {
				if !seenG[c] {
					seenG[c] = true
					next = append(next, c)
				}
			}
		}
		groups = append(groups, next...)
		level = next
	}
	for _, grp := range groups {
		for _, h := range grp.hosts {
			if h.seen != inv.walks {
				h.seen = inv.walks
				out = append(out, h)
			}
		}
	}
	return out
}

// resolver resolves hosts, sharing the work between hosts of the same
// direct groups: most hosts of a large inventory come from a few ranges.
type resolver struct {
	all, ungrouped *group
	sets           map[string]*groupSet // by the ids of a host's direct groups
	key            []byte
}

// groupSet is what hosts with the same direct groups share.
type groupSet struct {
	groups []*group          // with their ancestors, in the order their variables apply
	names  []string          // Host.Groups
	vars   map[string]string // Host.Vars of a host with no variables of its own
	done   bool              // vars is set
}

func (r *resolver) groupSet(h *host) *groupSet {
	r.key = r.key[:0]
	for _, g := range h.groups {
		r.key = strconv.AppendInt(r.key, int64(g.id), 10)
		r.key = append(r.key, ',')
	}
	if gs, ok := r.sets[string(r.key)]; ok {
		return gs
	}
	groups := closure(h.groups)
	sort.Slice(groups, func(i, j int) bool {
		a, b := groups[i], groups[j]
		if a.depth != b.depth {
			return a.depth < b.depth
		}
		if a.priority != b.priority {
			return a.priority < b.priority
		}
		return a.name < b.name
	})
	gs := &groupSet{groups: groups}
	for _, g := range groups {
		if g != r.all && g != r.ungrouped {
			gs.names = append(gs.names, g.name)
		}
	}
	sort.Strings(gs.names)
	r.sets[string(r.key)] = gs
	return gs
}

// resolve computes a host's Address, Port, Groups and merged Vars. The
// variables are layered as Ansible's default precedence has it, each layer
// replacing the variables it sets:
//
//  1. group "all" from the inventory source
//  2. the host's other groups from the inventory source, by depth, then
//     ansible_group_priority, then name
//  3. group_vars/all
//  4. group_vars/ of the host's other groups, in the same order
//  5. the host from the inventory source (including "name:port")
//  6. host_vars/ of the host
func (r *resolver) resolve(h *host) (Host, error) {
	gs := r.groupSet(h)
	out := Host{Name: h.name, Address: h.name, Groups: gs.names}
	if h.plain {
		out.Address, out.Port = h.addr, h.port
	}
	own := h.vars.len() > 0 || h.fileVars.len() > 0
	if !own && gs.done {
		out.Vars = gs.vars
		return out, hostAddress(h, &out)
	}
	merged := map[string]any{}
	layer := func(m *omap) {
		for i := 0; i < m.len(); i++ {
			merged[m.names[i]] = m.vals[i]
		}
	}
	layer(r.all.vars)
	for _, g := range gs.groups {
		if g != r.all {
			layer(g.vars)
		}
	}
	layer(r.all.fileVars)
	for _, g := range gs.groups {
		if g != r.all {
			layer(g.fileVars)
		}
	}
	layer(h.vars)
	layer(h.fileVars)
	if len(merged) > 0 {
		out.Vars = make(map[string]string, len(merged))
		for k, v := range merged {
			s, err := render(v)
			if err != nil {
				return Host{}, syntaxErr(h.at.source, h.at.line, "host %q: variable %q: %v", h.name, k, err)
			}
			out.Vars[k] = s
		}
	}
	if !own {
		gs.vars, gs.done = out.Vars, true
	}
	return out, hostAddress(h, &out)
}

// hostAddress sets out's Address and Port from the ansible_host and
// ansible_port in out.Vars, and checks them.
func hostAddress(h *host, out *Host) error {
	if s, ok := out.Vars["ansible_host"]; ok {
		if err := checkAddress(s); err != nil {
			return syntaxErr(h.at.source, h.at.line, "host %q: ansible_host %v", h.name, err)
		}
		out.Address = s
	} else if err := checkAddress(out.Address); err != nil {
		return syntaxErr(h.at.source, h.at.line, "host %q: %v; set ansible_host to the address to connect to", h.name, err)
	}
	s, ok := out.Vars["ansible_port"]
	if h.plain && h.port > 0 && !hostSets(h, "ansible_port") {
		// A plain list's "name:port" is the host's own port: group
		// variables do not override it.
		ok = false
	}
	if ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 || !isDigits(s) {
			return syntaxErr(h.at.source, h.at.line, "host %q: invalid ansible_port %q (must be 1-65535)", h.name, s)
		}
		out.Port = n
	}
	return nil
}

// hostSets reports whether the host's own variables set key.
func hostSets(h *host, key string) bool {
	if _, ok := h.vars.get(key); ok {
		return true
	}
	_, ok := h.fileVars.get(key)
	return ok
}

// Hosts returns every host, in the order Ansible lists group "all": hosts
// listed under "all" itself, then "ungrouped", then the other groups
// top-down in the order they were read. Hosts share their Vars and Groups
// with each other and the Inventory: treat them as read-only.
func (inv *Inventory) Hosts() []Host {
	return append([]Host(nil), inv.resolved...)
}

// Groups returns the names of every group, sorted, "all" and "ungrouped"
// included.
func (inv *Inventory) Groups() []string {
	names := make([]string, 0, len(inv.groups))
	for _, g := range inv.groups {
		names = append(names, g.name)
	}
	sort.Strings(names)
	return names
}

// emptyErr is the error for an inventory with no hosts.
func emptyErr(source string) error {
	return fmt.Errorf("%s: %w; add hosts to a group, e.g. [web] then web1 on the next line", source, ErrEmpty)
}
