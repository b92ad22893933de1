package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interleaveArgs moves a command's positional arguments after its flags.
// urfave/cli v2 stops parsing flags at the first positional argument, but
// operators write `patrol results BATCH -o json`; this lets flags stand on
// either side. Global flags before the command are left as they are.
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
	// A command's subcommand (patrol schedule create NAME ...) takes the
	// flags and arguments after it.
	for i+1 < len(args) {
		var sub *cli.Command
		for _, sc := range cmd.Subcommands {
			if sc.HasName(args[i+1]) {
				sub = sc
			}
		}
		if sub == nil {
			break
		}
		i, cmd = i+1, sub
	}
	out := append([]string{}, args[:i+1]...)
	var positional []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			positional = append(positional, rest[j+1:]...)
			j = len(rest)
		case strings.HasPrefix(a, "-") && a != "-":
			out = append(out, a)
			if takesValue(cmd.Flags, a) && j+1 < len(rest) {
				out = append(out, rest[j+1])
				j++
			}
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
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
