package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// interleaveArgs lets flags stand anywhere on the command line, as kubectl
// and etcdctl allow. urfave/cli v2 stops parsing flags at the first
// positional argument, and takes global flags only before the command;
// operators write `patrol results BATCH -o json` and `patrol worker
// --log-level debug`. So it moves a command's positional arguments after
// its flags, and global flags given after the command (and not also the
// command's own, as -o is) before it. Global flags before the command are
// left as they are.
func interleaveArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Find the command name, skipping global flags and their values.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if args[i] == "--" {
			return args
		}
		if takesValue(app.Flags, args[i]) {
			i++
		}
		i++
	}
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	head := []string{args[i]}
	rest := args[i+1:]
	// Descend into subcommands (`patrol web token NAME`).
	for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub := cmd.Command(rest[0])
		if sub == nil {
			break
		}
		head, rest, cmd = append(head, rest[0]), rest[1:], sub
	}
	var globals, flags, positional []string
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			positional = append(positional, rest[j+1:]...)
			j = len(rest)
		case strings.HasPrefix(a, "-") && a != "-":
			dst, set := &flags, cmd.Flags
			if !hasFlag(cmd.Flags, a) && hasFlag(app.Flags, a) {
				dst, set = &globals, app.Flags
			}
			*dst = append(*dst, a)
			if takesValue(set, a) && j+1 < len(rest) {
				*dst = append(*dst, rest[j+1])
				j++
			}
		default:
			positional = append(positional, a)
		}
	}
	out := append([]string{args[0]}, globals...)
	out = append(out, args[1:i]...)
	out = append(out, head...)
	out = append(out, flags...)
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
}

// flagName is the name a flag token (like "-o", "--param" or
// "--log-level=debug") gives.
func flagName(tok string) string {
	name := strings.TrimLeft(tok, "-")
	if k, _, ok := strings.Cut(name, "="); ok {
		return k
	}
	return name
}

// hasFlag reports whether flags define the flag token's name.
func hasFlag(flags []cli.Flag, tok string) bool {
	name := flagName(tok)
	return slices.ContainsFunc(flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), name) })
}

// takesValue reports whether the flag token (like "-o" or "--param") names a
// flag that takes a separate value, i.e. is not boolean and has no "=value".
func takesValue(flags []cli.Flag, tok string) bool {
	if strings.Contains(tok, "=") {
		return false
	}
	name := strings.TrimLeft(tok, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
