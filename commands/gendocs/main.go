// Command gendocs writes the generated completions and man page into the
// repository; run it with "go generate ./...".
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/p2pstream/p2ptls/commands"
	"github.com/p2pstream/p2ptls/state"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gendocs REPO_ROOT")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

func run(root string) error {
	files, err := commands.GeneratedFiles()
	if err != nil {
		return err
	}
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := state.MkdirAll(filepath.Dir(p)); err != nil {
			return err
		}
		if err := state.WriteFileAtomic(p, []byte(content), state.PublicMode); err != nil {
			return err
		}
	}
	return nil
}
