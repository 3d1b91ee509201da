package commands

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/backup"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/userfile"
)

const (
	flgPassphraseFile = "passphrase-file"
	flgAllowMissingCA = "allow-missing-management-ca"
)

func passphraseFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: flgPassphraseFile, Usage: usage}
}

func backupCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "backup",
		Usage:     "write the whole state, management CA included, to one archive",
		ArgsUsage: "[--out FILE|-] [--passphrase-file F]",
		Description: "The archive (tar.gz) holds every file of the state directory except run/ and\n" +
			"the lock, and a manifest with each file's path, mode, size and SHA-256 and the\n" +
			"management CA's fingerprint. It is taken under the state lock, so it is\n" +
			"consistent while serve and cron jobs run. It holds private keys and tokens:\n" +
			"--out writes it 0600, and --passphrase-file encrypts it with age (scrypt): the\n" +
			"passphrase is the file's content without its trailing newline; without it,\n" +
			"backup warns on standard error that the archive holds the keys in clear\n" +
			"(--quiet silences that). Without --out, or with --out -, it goes to standard\n" +
			"output, which must not be a terminal. A key or secret that group or others\n" +
			"may read is refused: chmod 600 it first." + examples(
			"p2ptls backup --out /var/backups/p2ptls.tar.gz.age --passphrase-file /root/p2ptls.pass",
			"p2ptls backup --quiet | ssh backup@vault.example.com 'cat > p2ptls.tar.gz'",
			"p2ptls backup --out /var/backups/p2ptls.tar.gz --output json"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flgOut, Usage: "write the archive to this file (0600, replaced only by a complete archive); - for standard output"},
			passphraseFlag("encrypt the archive with the passphrase in this file (age, scrypt)"),
		},
	}, backupAction)
}

// backupSummary is backup's JSON output (with --out FILE).
type backupSummary struct {
	File                string    `json:"file"`
	CreatedAt           time.Time `json:"created_at"`
	P2PTLSVersion       string    `json:"p2ptls_version"`
	CAFingerprintSHA256 string    `json:"ca_fingerprint_sha256"`
	Encrypted           bool      `json:"encrypted"`
	Files               int       `json:"files"`
	Bytes               int64     `json:"bytes"`
}

func backupAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	out := c.String(flgOut)
	toStdout := out == "" || out == "-"
	if toStdout && g.JSON() {
		return fault.Invalidf("give --out FILE for a JSON summary", "backup to standard output cannot print JSON: standard output carries the archive")
	}
	if f, ok := g.Stdout.(*os.File); toStdout && ok && isTerminal(f) {
		return fault.Invalidf("give --out FILE, or redirect standard output: p2ptls backup > p2ptls-backup.tar.gz", "backup will not write an archive to a terminal")
	}
	opts := backup.CreateOptions{Version: Version(), Now: time.Now()}
	if f := c.String(flgPassphraseFile); f != "" {
		p, err := backup.ReadPassphraseFile(f)
		if err != nil {
			return err
		}
		opts.Passphrase = p
	}
	var m *backup.Manifest
	var err error
	if toStdout {
		m, err = backup.Create(ctx, g.Store(), g.Stdout, opts)
	} else {
		m, err = backup.CreateFile(ctx, g.Store(), out, opts)
	}
	if err != nil {
		return err
	}
	// Said every time, on stderr so that scripts reading the archive or
	// the JSON from stdout are unaffected; --quiet is the way to silence it.
	if opts.Passphrase == "" && !g.Quiet {
		g.Warnf("the archive holds every private key and token in clear: keep it like the keys themselves, or encrypt it with --passphrase-file")
	}
	if !m.HasCA() {
		g.Warnf("the state has no management CA (certs/management): restoring this backup needs --allow-missing-management-ca, and every agent must then be given the new CA")
	}
	ca := "no management CA"
	if m.HasCA() {
		ca = "management CA " + m.CAFingerprintSHA256
	}
	enc := ""
	if opts.Passphrase != "" {
		enc = ", encrypted"
	}
	detail := fmt.Sprintf("%d files, %s%s, %s", len(m.Files), byteCount(m.TotalSize()), enc, ca)
	if toStdout {
		// Standard output is the archive: the sentence goes to stderr.
		if !g.Quiet {
			fmt.Fprintf(g.Stderr, "wrote the backup to standard output (%s)\n", detail)
		}
		return nil
	}
	return g.Done(backupSummary{
		File: out, CreatedAt: m.CreatedAt, P2PTLSVersion: m.P2PTLSVersion, CAFingerprintSHA256: m.CAFingerprintSHA256,
		Encrypted: opts.Passphrase != "", Files: len(m.Files), Bytes: m.TotalSize(),
	}, "wrote the backup %s (%s)", out, detail)
}

// byteCount writes a size for people.
func byteCount(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

func restoreCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "restore",
		Usage:     "restore the whole state from a backup archive",
		ArgsUsage: "FILE|- [--dry-run] [--force] [--allow-missing-management-ca] [--passphrase-file F]",
		Description: "Reads the whole archive (- for standard input) and verifies it against its\n" +
			"manifest before it touches anything: every checksum, mode and size, no absolute\n" +
			"paths, no '..', no links or devices, nothing missing, duplicated or extra. It\n" +
			"extracts beside the state directory and then swaps the directories in one\n" +
			"rename, under the state lock: a crash leaves the old state or the new one,\n" +
			"never a mix. A state that is not empty is replaced only with --force, and kept\n" +
			"beside it as <dir>.pre-restore-<time>. A backup without a management CA is\n" +
			"refused unless --allow-missing-management-ca: every agent must then be given\n" +
			"the new CA. Keys and secrets are written 0600 whatever the archive says. An\n" +
			"archive whose p2ptls.toml does not load, with data after its end, or whose\n" +
			"scrypt work factor is above 18 is refused. A restore removes the staging\n" +
			"directories (<dir>.restore-tmp-*) of restores that were killed.\n" +
			"--dry-run says what would change and writes nothing. A running\n" +
			"serve picks the restored state up within a second. The state directory must\n" +
			"not be a mount point, and its parent must be writable." + examples(
			"p2ptls restore --dry-run /var/backups/p2ptls.tar.gz",
			"p2ptls restore --force --passphrase-file /root/p2ptls.pass /var/backups/p2ptls.tar.gz.age",
			"ssh backup@vault.example.com 'cat p2ptls.tar.gz' | p2ptls restore --force -"),
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: flgDryRun, Usage: "verify the archive and say what would change, writing nothing"},
			&cli.BoolFlag{Name: flgForce, Usage: "replace a state that is not empty (it is kept beside as <dir>.pre-restore-<time>)"},
			&cli.BoolFlag{Name: flgAllowMissingCA, Usage: "restore a backup without a management CA; every agent must then be given the new CA"},
			passphraseFlag("decrypt the archive with the passphrase in this file"),
		},
	}, restoreAction)
}

func restoreAction(ctx context.Context, g *Globals, c *cli.Context) error {
	src, err := oneArg(c, "the backup FILE (- for standard input)")
	if err != nil {
		return err
	}
	opts := backup.RestoreOptions{
		DryRun: c.Bool(flgDryRun), Force: c.Bool(flgForce), AllowMissingCA: c.Bool(flgAllowMissingCA), Now: time.Now(),
	}
	if f := c.String(flgPassphraseFile); f != "" {
		if opts.Passphrase, err = backup.ReadPassphraseFile(f); err != nil {
			return err
		}
	}
	var r io.Reader = os.Stdin
	if src == "-" && isTerminal(os.Stdin) {
		return fault.Invalidf("pipe the archive in, e.g. p2ptls restore - < p2ptls-backup.tar.gz, or give its file name", "restore - reads the archive from standard input, which is a terminal")
	}
	if src != "-" {
		// A regular file only: a FIFO would block, /dev/zero never end.
		// The archive's own limits bound what is read from it.
		f, err := userfile.Open(src)
		if err != nil {
			return fmt.Errorf("cannot read the backup: %w", err)
		}
		defer f.Close()
		r = f
	}
	res, err := backup.Restore(ctx, g.Store(), r, opts)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		g.Warnf("%s", w)
	}
	if opts.Passphrase != "" && !res.Encrypted {
		g.Warnf("the backup is not encrypted; --passphrase-file was not needed")
	}
	switch {
	case res.CA == backup.CADifferent:
		g.Warnf("the backup's management CA is not the one agents trust now: every agent must be given it ('p2ptls agent env')")
	case res.CA == backup.CANone && opts.AllowMissingCA:
		g.Warnf("the backup holds no management CA: serve creates a new one, and every agent must then be given it ('p2ptls agent env')")
	case res.CA == backup.CANone:
		g.Warnf("the backup holds no management CA: a restore needs --allow-missing-management-ca")
	}
	if opts.DryRun && res.ReplacesState && !opts.Force {
		g.Warnf("%s is not empty: a restore needs --force (the current state is then kept beside it)", res.Target)
	}
	if g.JSON() {
		return printJSON(g.Stdout, res)
	}
	// With --quiet a restore prints nothing; a dry run's report is what was asked for.
	if g.Quiet && !opts.DryRun {
		return nil
	}
	if opts.DryRun {
		g.Infof("dry run: the backup is complete and intact; nothing was changed")
	} else {
		g.Infof("restored %d files into %s", res.Files, res.Target)
	}
	if err := printFields(g.Stdout, restoreFields(res)); err != nil {
		return err
	}
	if res.PreviousState != "" {
		g.Infof("the previous state is kept in %s; remove it when you no longer need it", res.PreviousState)
	}
	if st, err := runstatus.Read(ctx, g.Store()); !opts.DryRun && err == nil && st.ServeRunning {
		g.Infof("the running serve (pid %d) picks the restored state up within a second", st.PID)
	}
	return nil
}

// restoreFields describes a restore for people.
func restoreFields(res *backup.Result) [][2]string {
	enc := ""
	if res.Encrypted {
		enc = ", encrypted"
	}
	ca := map[string]string{
		backup.CASame:      "same as now: " + res.CAFingerprintSHA256,
		backup.CADifferent: "different: " + res.CAFingerprintSHA256 + " (now " + res.CurrentCAFingerprintSHA256 + ")",
		backup.CARestored:  res.CAFingerprintSHA256 + " (the current state has none)",
		backup.CANone:      "none in the backup",
	}[res.CA]
	return [][2]string{
		{"backup of", res.CreatedAt.Format(time.RFC3339) + " (p2ptls " + res.P2PTLSVersion + ")"},
		{"files", fmt.Sprintf("%d, %s%s", res.Files, byteCount(res.Bytes), enc)},
		{"management CA", ca},
		{"listeners", changeSummary(res.Listeners)},
		{"mappings", changeSummary(res.Mappings)},
	}
}

// changeSummary writes a Change on one line.
func changeSummary(c backup.Change) string {
	var parts []string
	for _, p := range []struct {
		verb  string
		names []string
	}{{"added", c.Added}, {"removed", c.Removed}, {"changed", c.Changed}} {
		if len(p.names) > 0 {
			parts = append(parts, p.verb+" "+strings.Join(p.names, ", "))
		}
	}
	if len(parts) == 0 {
		return "unchanged"
	}
	return strings.Join(parts, "; ")
}
