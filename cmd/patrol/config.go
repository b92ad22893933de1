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
		Usage: "YAML file of global flags (endpoints, prefix, dial-timeout, log-level, log-format, output) (default: USER_CONFIG_DIR/patrol/config.yaml, if it exists)"}
}

// configurable are the global flags a config file may set.
var configurable = []string{"endpoints", "prefix", "dial-timeout", "log-level", "log-format", "output"}

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
	var values map[string]any
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
		v := values[key]
		if list, ok := v.([]any); ok { // endpoints may be a YAML list
			parts := make([]string, len(list))
			for i, p := range list {
				parts[i] = fmt.Sprint(p)
			}
			v = strings.Join(parts, ",")
		}
		if err := c.Set(key, fmt.Sprint(v)); err != nil {
			return fmt.Errorf("config %s: %s: %v", path, key, err)
		}
	}
	return nil
}
