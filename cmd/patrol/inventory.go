package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/patrol-dev/patrol/internal/inventory"
)

func inventoryCommand() *cli.Command {
	return &cli.Command{
		Name:  "inventory",
		Usage: "show the hosts an inventory expands to: names, addresses, ports, groups and variables",
		Description: "Reads a plain host list, an Ansible inventory (INI, YAML, or JSON as ansible-inventory --list\n" +
			"prints it) or a directory of them, with group_vars/ and host_vars/ beside it, as `patrol submit`\n" +
			"does, and prints every host, or those --limit selects. Touches no etcd.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			outputFlag("table", "json"),
			&cli.StringFlag{Name: "inventory", Aliases: []string{"i"}, Usage: "inventory file or directory"},
			&cli.StringFlag{Name: "limit", Aliases: []string{"l"},
				Usage: "Ansible host pattern: web:&prod, web:!web1, web*, ~re, web[0:2], @file"},
		},
		Action: showInventory,
	}
}

// inventoryHost is one host as `patrol inventory -o json` prints it: every
// field present, the port 0 when unset.
type inventoryHost struct {
	Name    string            `json:"name"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Groups  []string          `json:"groups"`
	Vars    map[string]string `json:"vars"`
}

func showInventory(c *cli.Context) error {
	a := appOf(c)
	if c.Args().Len() > 0 {
		return usageErr("inventory takes no arguments, got %q: pass the inventory with -i FILE", c.Args().First())
	}
	out, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	path := c.String("inventory")
	if path == "" {
		return usageErr("no inventory: pass -i FILE (a host list, an Ansible inventory, or a directory of them)")
	}
	inv, err := inventory.Load(path)
	if err != nil {
		return err
	}
	hosts := inv.Hosts()
	if c.IsSet("limit") {
		if hosts, err = inv.Select(c.String("limit")); err != nil {
			return fmt.Errorf("--limit: %w", err)
		}
	}
	if out == "json" {
		rows := make([]inventoryHost, len(hosts))
		for i, h := range hosts {
			rows[i] = inventoryHost{Name: h.Name, Address: h.Address, Port: h.Port, Groups: h.Groups, Vars: h.Vars}
			if rows[i].Groups == nil {
				rows[i].Groups = []string{}
			}
			if rows[i].Vars == nil {
				rows[i].Vars = map[string]string{}
			}
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	printInventory(a.stdout, hosts)
	return nil
}

func printInventory(w io.Writer, hosts []inventory.Host) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tPORT\tGROUPS\tVARS")
	for _, h := range hosts {
		port, groups := "-", "-"
		if h.Port != 0 {
			port = strconv.Itoa(h.Port)
		}
		if len(h.Groups) > 0 {
			groups = strings.Join(h.Groups, ",")
		}
		vars := make([]string, 0, len(h.Vars))
		for _, k := range sortedKeys(h.Vars) {
			vars = append(vars, k+"="+h.Vars[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Name, h.Address, port, groups, oneLine(strings.Join(vars, " ")))
	}
	tw.Flush()
}
