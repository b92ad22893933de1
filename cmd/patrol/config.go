package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// configFlag is --config: a YAML file of global flag values.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", EnvVars: []string{"PATROL_CONFIG"},
		Usage: "YAML file of global flags (" + strings.Join(configurable, ", ") + "; relative cacert, cert and key paths are from the file's directory) (default: USER_CONFIG_DIR/patrol/config.yaml, if it exists)"}
}

// configurable are the global flags a config file may set.
var configurable = []string{"endpoints", "prefix", "dial-timeout", "log-level", "log-format", "output",
	"cacert", "cert", "key", "user", "password"}

// configPaths are the configurable flags that name files: a relative path
// in the config file is from the file's directory, not from wherever
// patrol happens to run.
var configPaths = []string{"cacert", "cert", "key"}

// applyConfig sets, from the config file, every global flag that neither
// the command line nor the environment set: flags win over the
// environment, which wins over the file, which wins over the defaults.
func applyConfig(c *cli.Context) error {
	path, explicit := c.String("config"), c.IsSet("config")
	if path == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return nil
		}
		path = filepath.Join(dir, "patrol", "config.yaml")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	// Nodes, not decoded values: a value is taken as written, so that a
	// password such as 007 or 1e3 is not read as a number.
	var values map[string]yaml.Node
	if err := yaml.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("config %s: %v; write it as YAML, e.g. `endpoints: etcd1:2379,etcd2:2379`", path, err)
	}
	for _, key := range sortedKeys(values) {
		if !slices.Contains(configurable, key) {
			return fmt.Errorf("config %s: unknown setting %q; use %s", path, key, strings.Join(configurable, ", "))
		}
		if c.IsSet(key) {
			continue
		}
		s, err := configValue(values[key])
		if err != nil {
			return fmt.Errorf("config %s: %s: %v", path, key, err)
		}
		if slices.Contains(configPaths, key) && s != "" && !filepath.IsAbs(s) {
			s = filepath.Join(filepath.Dir(path), s)
		}
		if err := c.Set(key, s); err != nil {
			return fmt.Errorf("config %s: %s: %v", path, key, err)
		}
	}
	return nil
}

// configValue is a setting's text as written: a scalar, or a list (of
// endpoints) joined with commas.
func configValue(n yaml.Node) (string, error) {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return "", nil
	case n.Kind == yaml.ScalarNode:
		return n.Value, nil
	case n.Kind == yaml.SequenceNode:
		parts := make([]string, len(n.Content))
		for i, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("line %d: want a list of plain values", item.Line)
			}
			parts[i] = item.Value
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("line %d: want a value or a list, e.g. `endpoints: [etcd1:2379, etcd2:2379]`", n.Line)
}
