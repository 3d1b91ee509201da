package commands

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/userfile"
)

const flgNoKeys = "no-keys"

// mappingBulkCommands are "mapping import" and "mapping export".
func mappingBulkCommands() []*cli.Command {
	return []*cli.Command{
		leaf(&cli.Command{
			Name:      "import",
			Usage:     "add many mappings from JSON lines, all or none",
			ArgsUsage: "FILE|-",
			Description: "Reads one mapping per line, a JSON object with the fields of POST\n" +
				"/api/v1/mappings (what 'p2ptls mapping export' writes), from FILE or, with -,\n" +
				"from standard input. Blank lines are skipped; nothing else (no comments).\n" +
				"Every mapping is checked as 'mapping add' checks it, against the state and the\n" +
				"lines before it; then all are added under one lock in one change (a record\n" +
				"per mapping). The first line refused is named (line 17: ...) and nothing is\n" +
				"written. An id, or a host on the same listener, given twice is refused. Paths\n" +
				fmt.Sprintf("(cert_file, key_file) must be absolute. Limits: %s in all, %s a line.\n\n",
					userfile.Size(mappings.MaxImportBytes), userfile.Size(mappings.MaxImportLine)) +
				"Moving mappings: 'p2ptls mapping export --out mappings.jsonl' on the old host." +
				examples("p2ptls mapping import mappings.jsonl", "p2ptls mapping import --output json mappings.jsonl"),
		}, mappingImportAction),
		leaf(&cli.Command{
			Name:      "export",
			Usage:     "write the mappings as JSON lines for 'mapping import'",
			ArgsUsage: "[--listener NAME] [--out FILE|-] [--no-keys]",
			Description: "Writes one JSON object per mapping, in the order of their ids, with the\n" +
				"fields of POST /api/v1/mappings: what 'mapping add' was given. A self-signed\n" +
				"mapping gets a new certificate when imported and an ACME one is issued again;\n" +
				"a manual mapping carries its certificate chain and private key (cert_pem,\n" +
				"key_pem), a file mapping the paths of its files. A manual or file certificate\n" +
				"that is expired or not yet valid is written with allow_expired. An export\n" +
				"with keys is written 0600 with --out, is refused on a terminal, and export\n" +
				"warns on standard error that it holds them in clear (--quiet silences that);\n" +
				"--no-keys leaves the keys out, and such manual lines cannot be imported." +
				examples("p2ptls mapping export --out mappings.jsonl", "p2ptls mapping export --listener web --no-keys --out web.jsonl"),
			Flags: []cli.Flag{
				&cli.StringFlag{Name: flgListener, Usage: "only this listener's mappings"},
				&cli.StringFlag{Name: flgOut, Usage: "write to this file (0600, replaced only when complete); - for standard output"},
				&cli.BoolFlag{Name: flgNoKeys, Usage: "leave out the private keys of manual mappings (not importable then)"},
			},
		}, mappingExportAction),
	}
}

// mappingImported is what "mapping import --output json" prints.
type mappingImported struct {
	Added    []string `json:"added"`
	Warnings []string `json:"warnings,omitempty"`
}

func mappingImportAction(ctx context.Context, g *Globals, c *cli.Context) error {
	src, err := oneArg(c, "FILE (- for standard input)")
	if err != nil {
		return err
	}
	var r io.Reader = os.Stdin
	name := "standard input"
	if src == "-" && isTerminal(os.Stdin) {
		return fault.Invalidf("pipe the mappings in, e.g. p2ptls mapping import - < mappings.jsonl, or give the file name",
			"mapping import - reads from standard input, which is a terminal")
	}
	if src != "-" {
		// A regular file only: a FIFO would block, /dev/zero never end.
		// The import's own limits bound what is read from it.
		f, err := userfile.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		r, name = f, src
	}
	added, warnings, err := mappings.ImportChecked(ctx, g.Store(), r, name, time.Now(), acme.ProfileSource(g.Store()))
	if err != nil {
		return err
	}
	for _, w := range warnings {
		g.Warnf("%s", w)
	}
	ids := make([]string, len(added))
	for i, a := range added {
		ids[i] = a.Mapping.ID
	}
	return g.Done(mappingImported{Added: ids, Warnings: warnings}, "added %d mappings", len(ids))
}

// mappingExported is what "mapping export --out FILE --output json" prints.
type mappingExported struct {
	File     string `json:"file"`
	Exported int    `json:"exported"`
	Keys     int    `json:"keys"`
}

func mappingExportAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	out := c.String(flgOut)
	toStdout := out == "" || out == "-"
	recs, err := mappings.Export(ctx, g.Store(), mappings.ExportOptions{Listener: c.String(flgListener), NoKeys: c.Bool(flgNoKeys)}, time.Now())
	if err != nil {
		return err
	}
	keys := 0
	for _, r := range recs {
		if r.KeyPEM != "" {
			keys++
		}
	}
	if f, ok := g.Stdout.(*os.File); toStdout && keys > 0 && ok && isTerminal(f) {
		return fault.Invalidf("give --out FILE, redirect standard output, or leave the keys out with --no-keys",
			"mapping export will not write the private keys of %d manual mappings to a terminal", keys)
	}
	data, err := mappings.EncodeRecords(recs)
	if err != nil {
		return err
	}
	if toStdout {
		if _, err := g.Stdout.Write(data); err != nil {
			return fmt.Errorf("write the export: %w", err)
		}
	} else if err := state.WriteFileAtomic(out, data, state.SecretMode); err != nil {
		// Always 0600: whether it holds keys or not, it maps the hosts.
		return fault.Failf("check that the directory exists and is writable", "cannot write the export: %v", err)
	}
	// On stderr, so that a script reading the export from stdout is unaffected.
	if keys > 0 && !g.Quiet {
		g.Warnf("the export holds the private keys of %d manual mappings in clear: keep it like the keys themselves, or use --no-keys", keys)
	}
	if toStdout {
		if !g.Quiet && !g.JSON() {
			fmt.Fprintf(g.Stderr, "exported %d mappings to standard output\n", len(recs))
		}
		return nil
	}
	return g.Done(mappingExported{File: out, Exported: len(recs), Keys: keys}, "exported %d mappings to %s", len(recs), out)
}
