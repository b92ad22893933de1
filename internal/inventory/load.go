package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Format is an inventory file's format.
type Format string

// The formats Load reads; see the package documentation for how it tells
// them apart.
const (
	FormatPlain Format = "plain" // Patrol's host list: one host per line
	FormatINI   Format = "ini"   // Ansible INI
	FormatYAML  Format = "yaml"  // Ansible YAML
	FormatJSON  Format = "json"  // ansible-inventory --list JSON, or YAML-shaped JSON
)

// Load reads the inventory at path: a file in any format Patrol reads, or a
// directory of them as Ansible reads one, then the group_vars/ and
// host_vars/ beside it (in the directory itself for a directory).
func Load(path string) (*Inventory, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s; check the path, or create it with one host per line", ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	inv := newInventory()
	l := &loader{inv: inv}
	varsDir := filepath.Dir(path)
	if fi.IsDir() {
		varsDir = path
		err = l.dir(path)
	} else {
		err = l.file(path)
	}
	if err != nil {
		return nil, err
	}
	if err := loadVarsFiles(inv, varsDir); err != nil {
		return nil, err
	}
	if err := inv.finish(); err != nil {
		return nil, err
	}
	if len(inv.resolved) == 0 {
		switch {
		case !fi.IsDir() && l.formats[FormatPlain] == 1:
			return nil, plainEmptyErr(path)
		case len(l.ignored) > 0:
			return nil, fmt.Errorf("%s: %w; files Ansible ignores in an inventory directory were skipped (%s): rename them without that extension",
				path, ErrEmpty, strings.Join(l.ignored, ", "))
		default:
			return nil, emptyErr(path)
		}
	}
	return inv, nil
}

// parseOne reads one source into a new inventory and settles it.
func parseOne(r io.Reader, source string, parse func(*Inventory, []byte, string) error) (*Inventory, error) {
	return parseLimited(r, source, parse, MaxHosts)
}

// parseLimited is parseOne with at most maxHosts hosts.
func parseLimited(r io.Reader, source string, parse func(*Inventory, []byte, string) error, maxHosts int) (*Inventory, error) {
	if source == "" {
		source = "inventory"
	}
	data, err := readAll(r, source)
	if err != nil {
		return nil, err
	}
	inv := newInventory()
	inv.maxHosts = maxHosts
	if err := parse(inv, data, source); err != nil {
		return nil, err
	}
	if err := inv.finish(); err != nil {
		return nil, err
	}
	if len(inv.resolved) == 0 {
		return nil, emptyErr(source)
	}
	return inv, nil
}

// maxFileSize bounds one inventory or variables file.
const maxFileSize = 512 << 20

func readAll(r io.Reader, source string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading inventory: %w", source, err)
	}
	if len(data) > maxFileSize {
		return nil, &ParseError{Source: source, Err: ErrTooMany, Msg: fmt.Sprintf(
			"larger than %d MiB; split the inventory into several files in a directory", maxFileSize>>20)}
	}
	return data, nil
}

type loader struct {
	inv     *Inventory
	ignored []string       // files of a directory skipped for their name
	formats map[Format]int // files read, by format
}

// ignoredName matches the names Ansible skips in an inventory directory:
// hidden files, group_vars, host_vars, vars_plugins, and its
// INVENTORY_IGNORE_EXTS (.ini and .txt among them).
var ignoredName = regexp.MustCompile(`^\.|^host_vars$|^group_vars$|^vars_plugins$|` +
	`(?:\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.ini|\.cfg|\.retry)$`)

// dir reads every inventory in a directory, in name order, and those of its
// subdirectories, as Ansible does.
func (l *loader) dir(path string) error {
	entries, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		full := filepath.Join(path, name)
		if ignoredName.MatchString(name) {
			if !strings.HasPrefix(name, ".") && name != "group_vars" && name != "host_vars" && name != "vars_plugins" {
				l.ignored = append(l.ignored, full)
			}
			continue
		}
		fi, err := os.Stat(full)
		if err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		if fi.IsDir() {
			err = l.dir(full)
		} else {
			err = l.file(full)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// file reads one inventory file into the inventory.
func (l *loader) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	data, err := readAll(f, path)
	f.Close()
	if err != nil {
		return err
	}
	format, err := detect(path, data)
	if err != nil {
		return err
	}
	if l.formats == nil {
		l.formats = map[Format]int{}
	}
	l.formats[format]++
	switch format {
	case FormatPlain:
		return l.inv.addPlain(data, path)
	case FormatINI:
		return parseINI(l.inv, data, path)
	case FormatYAML:
		return parseYAMLInventory(l.inv, data, path)
	default:
		return parseJSONInventory(l.inv, data, path)
	}
}

// addPlain reads a plain host list into the inventory: its hosts join
// group "ungrouped", keeping the address and port their line gives.
func (inv *Inventory) addPlain(data []byte, source string) error {
	hosts, lines, err := parsePlain(bytes.NewReader(data), source)
	if err != nil {
		return err
	}
	ungrouped := inv.groupByName["ungrouped"]
	for i, ph := range hosts {
		_, existed := inv.hostByName[ph.Name]
		h, err := inv.addHost(ph.Name, ungrouped, -1, pos{source, lines[i]})
		if err != nil {
			return err
		}
		if !existed {
			h.plain, h.addr, h.port = true, ph.Address, ph.Port
		}
		for _, k := range sortedVarNames(ph.Vars) {
			h.vars.set(k, ph.Vars[k], lines[i])
		}
	}
	return nil
}

func sortedVarNames(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var (
	// reYAMLKeyLine is a line that can only start a YAML mapping:
	// "name:" alone or followed by a space.
	reYAMLKeyLine = regexp.MustCompile(`^(?:"[^"]*"|'[^']*'|[^\s#;\[\]="':][^\s=:]*):(?:\s|$)`)
	reDocStart    = regexp.MustCompile(`^(?:---|%YAML)(?:\s|$)`)
)

// detect decides a file's format, from its extension and then its content;
// see the package documentation.
func detect(path string, data []byte) (Format, error) {
	if bytes.HasPrefix(data, []byte("#!")) {
		return "", &ParseError{Source: path, Line: 1, Err: ErrUnsupported, Msg: "this is an inventory script, which Patrol does not run; " +
			"save its output with `" + path + " --list > inventory.json` and use that"}
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ini":
		return FormatINI, nil
	case ".yml", ".yaml":
		return FormatYAML, nil
	case ".json":
		return FormatJSON, nil
	}
	text := string(bytes.TrimPrefix(data, []byte("\uFEFF")))
	first := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line[0] != '#' {
			first = line
			break
		}
	}
	switch {
	case strings.HasPrefix(first, "{"):
		return FormatJSON, nil
	case reDocStart.MatchString(first), reYAMLKeyLine.MatchString(first):
		return FormatYAML, nil
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if reSection.MatchString(line) || strings.HasPrefix(line, ";") {
			return FormatINI, nil
		}
		if usesINISyntax(line) {
			return FormatINI, nil
		}
	}
	return FormatPlain, nil
}

// usesINISyntax reports whether a line of a file without sections uses
// what only Ansible's INI format has: a host range (web[01:20]), quotes,
// or an ansible_* variable.
func usesINISyntax(line string) bool {
	words := strings.Fields(line)
	for i, w := range words {
		if strings.HasPrefix(w, "#") {
			words = words[:i]
			break
		}
	}
	if len(words) == 0 {
		return false
	}
	if i := strings.IndexByte(words[0], '['); i > 0 {
		return true
	}
	for _, w := range words {
		if strings.ContainsAny(w, `'"`) {
			return true
		}
	}
	for _, w := range words[1:] {
		if strings.HasPrefix(w, "ansible_") {
			return true
		}
	}
	return false
}

// varsExts are the names a group_vars or host_vars entry may have, in the
// order Ansible looks for them: the first that exists is used.
var varsExts = []string{"", ".yml", ".yaml", ".json"}

// loadVarsFiles reads dir/group_vars and dir/host_vars: for each group and
// host, the file or directory named after it (with no extension, .yml,
// .yaml or .json). A directory's files are read in name order, each
// replacing the variables the previous ones set.
func loadVarsFiles(inv *Inventory, dir string) error {
	for _, kind := range []string{"group_vars", "host_vars"} {
		base := filepath.Join(dir, kind)
		fi, err := os.Stat(base)
		if err != nil || !fi.IsDir() {
			continue // Ansible skips a group_vars that is not a directory
		}
		entries, err := os.ReadDir(base)
		if err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		present := make(map[string]bool, len(entries))
		for _, e := range entries {
			present[e.Name()] = true
		}
		read := func(name string) (*omap, error) {
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
				return nil, nil
			}
			for _, ext := range varsExts {
				if present[name+ext] {
					return readVarsPath(filepath.Join(base, name+ext))
				}
			}
			return nil, nil
		}
		if kind == "group_vars" {
			for _, g := range inv.groups {
				if g.fileVars, err = read(g.name); err != nil {
					return err
				}
			}
		} else {
			for _, h := range inv.hosts {
				if h.fileVars, err = read(h.name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// readVarsPath reads a variables file, or every file of a variables
// directory, merged; nil if none holds any variable.
func readVarsPath(path string) (*omap, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var files []string
	if fi.IsDir() {
		if files, err = varsDirFiles(path); err != nil {
			return nil, err
		}
	} else {
		files = []string{path}
	}
	var merged *omap
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		if len(data) > maxFileSize {
			return nil, &ParseError{Source: f, Err: ErrTooMany, Msg: fmt.Sprintf("larger than %d MiB", maxFileSize>>20)}
		}
		v, err := readYAML(data, f)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		m, ok := v.(*omap)
		if !ok {
			return nil, syntaxErr(f, 0, "a variables file must be a mapping of variable names to values, not %s", describe(v))
		}
		if merged == nil {
			merged = newOmap()
		}
		for i := range m.names {
			merged.set(m.keys[i], m.vals[i], m.lines[i])
		}
	}
	return merged, nil
}

// varsDirFiles lists a variables directory as Ansible does: in name order,
// recursively, skipping hidden files and backups (~), taking files with no
// extension or .yml, .yaml, .json.
func varsDirFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var files []string
	for _, e := range entries { // os.ReadDir sorts by name
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
			continue
		}
		full := filepath.Join(dir, name)
		fi, err := os.Stat(full)
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		ext := filepath.Ext(name)
		switch {
		case fi.IsDir() && ext == "":
			sub, err := varsDirFiles(full)
			if err != nil {
				return nil, err
			}
			files = append(files, sub...)
		case fi.Mode().IsRegular() && (ext == "" || ext == ".yml" || ext == ".yaml" || ext == ".json"):
			files = append(files, full)
		}
	}
	return files, nil
}
