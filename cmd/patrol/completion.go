package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// Shell completion scripts: bash and zsh ask patrol itself for candidates
// (urfave/cli's --generate-bash-completion); fish gets a generated script.
const bashCompletion = `# patrol completion for bash: eval "$(patrol completion bash)"
_patrol_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _patrol_complete patrol
`

const zshCompletion = `#compdef patrol
# patrol completion for zsh: eval "$(patrol completion zsh)"
_patrol() {
  local -a opts
  opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  _describe 'values' opts
}
compdef _patrol patrol
`

func completionCommand(root *cli.App) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: eval \"$(patrol completion bash)\" (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			a := appOf(c)
			switch shell := c.Args().First(); shell {
			case "bash":
				fmt.Fprint(a.stdout, bashCompletion)
			case "zsh":
				fmt.Fprint(a.stdout, zshCompletion)
			case "fish":
				script, err := root.ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Fprint(a.stdout, script)
			default:
				return usageErr("completion needs a shell: patrol completion bash|zsh|fish (got %q)", shell)
			}
			return nil
		},
	}
}
