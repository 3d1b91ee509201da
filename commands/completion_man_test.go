package commands

import (
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/commands/gendocs/roff"
	"github.com/p2pstream/p2ptls/commands/gendocs/roff/rofftest"
)

// TestManPageIsClean runs man-db over the committed page (the drift test
// keeps it equal to the generated one).
func TestManPageIsClean(t *testing.T) {
	rofftest.CheckPage(t, filepath.Join("..", "man", "p2ptls.1"))
}

func TestManPageSections(t *testing.T) {
	app := NewApp(io.Discard, io.Discard)
	man, err := ManPage()
	if err != nil {
		t.Fatal(err)
	}
	count := func(re string) int { return len(regexp.MustCompile(re).FindAllStringIndex(man, -1)) }
	for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "ENVIRONMENT", "FILES", `"EXIT STATUS"`, "EXAMPLES", `"SEE ALSO"`} {
		if n := count(`(?m)^\.SH ` + regexp.QuoteMeta(s) + `$`); n != 1 {
			t.Errorf("section %s appears %d times", s, n)
		}
	}
	// Every global option once, though every leaf carries a copy.
	for _, f := range app.Flags {
		if n := count(`(?m)^\\fB\\-\\-` + regexp.QuoteMeta(strings.ReplaceAll(f.Names()[0], "-", `\-`)) + `\\fR`); n != 1 {
			t.Errorf("global option --%s is listed %d times", f.Names()[0], n)
		}
	}
	// Every visible leaf once; every variable a flag reads in ENVIRONMENT.
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden {
				if strings.Contains(man, c.Name) {
					t.Errorf("hidden command %s is in the man page", c.Name)
				}
				continue
			}
			full := strings.TrimSpace(path + " " + c.Name)
			for _, f := range c.Flags {
				if df, ok := f.(cli.DocGenerationFlag); ok {
					for _, env := range df.GetEnvVars() {
						if count(`(?m)^\.B `+env+`$`) != 1 {
							t.Errorf("ENVIRONMENT lacks %s (--%s of %s)", env, f.Names()[0], full)
						}
					}
				}
			}
			if len(c.Subcommands) > 0 {
				walk(full, c.Subcommands)
			} else if n := count(`(?m)^\.SS "?` + regexp.QuoteMeta(strings.ReplaceAll(full, "-", `\-`)) + `"?$`); n != 1 {
				t.Errorf("command %s has %d entries", full, n)
			}
		}
	}
	walk("", app.Commands)
	for _, code := range []string{"0", "1", "2", "3", "130", "143"} {
		if n := count(`(?m)^\.B ` + code + `$`); n != 1 {
			t.Errorf("exit status %s listed %d times", code, n)
		}
	}
	if n := strings.Count(man, "EXIT STATUS"); n != 1 {
		t.Errorf("EXIT STATUS appears %d times: once, as the section", n)
	}
}

// TestManPageCommandExamples: a command whose help ends with an EXAMPLES
// block (as the commands that change state have) gets them under its own
// entry; the fixture command exists only in this test.
func TestManPageCommandExamples(t *testing.T) {
	app := NewApp(io.Discard, io.Discard)
	fixture := leaf(&cli.Command{
		Name:  "frobnicate",
		Usage: "a fixture command",
		Description: "Frobnicates.\n\nEXAMPLES:\n" +
			"   # Frobnicate the listener web:\n" +
			"   p2ptls frobnicate web --hard\n",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "hard", Usage: "frobnicate hard"}},
	}, nil)
	prepare(fixture, appName)
	app.Commands = append(app.Commands, fixture)
	man := roff.Render(manPage(app))
	entry := man[strings.Index(man, `.SS frobnicate`):]
	entry = entry[:strings.Index(entry, ".SH ")]
	want := ".PP\n.B Examples\n.PP\nFrobnicate the listener web:\n.PP\n.RS 4\n.nf\np2ptls frobnicate web \\-\\-hard\n.fi\n.RE\n"
	if !strings.HasSuffix(entry, want) {
		t.Errorf("fixture entry does not end with its examples:\n%s", entry)
	}
	for _, bad := range []string{"EXAMPLES:", "EXIT STATUS", `\-\-config\-dir`} {
		if strings.Contains(entry, bad) {
			t.Errorf("fixture entry holds %q:\n%s", bad, entry)
		}
	}
}
