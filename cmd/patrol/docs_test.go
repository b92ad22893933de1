package main

import (
	"io"
	"os"
	"testing"
)

// TestCLIReferenceIsCurrent keeps docs/cli.md, generated from the command
// definitions, in step with them. Regenerate with `make docs`.
func TestCLIReferenceIsCurrent(t *testing.T) {
	want, err := newApp(io.Discard, io.Discard).ToMarkdown()
	if err != nil {
		t.Fatal(err)
	}
	want = cliReferenceHeader + want
	if os.Getenv("PATROL_UPDATE_DOCS") == "1" {
		if err := os.WriteFile("../../docs/cli.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatalf("read docs/cli.md: %v (generate it with `make docs`)", err)
	}
	if string(got) != want {
		t.Fatal("docs/cli.md is out of date with the command definitions: run `make docs` and commit the result")
	}
}

const cliReferenceHeader = "<!-- Generated from the command definitions by `make docs`; do not edit. -->\n\n"
