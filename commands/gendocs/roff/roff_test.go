package roff

import (
	"github.com/p2pstream/p2ptls/commands/gendocs/roff/rofftest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

const fixtureExit = `EXIT STATUS:
   0  success
   2  usage or invalid input`

// fixture is a small tree shaped like p2ptls's: global flags copied onto
// every leaf, an EXIT STATUS block on every leaf, and one command whose
// help has an EXAMPLES block.
func fixture() Page {
	globals := func(env bool) []cli.Flag {
		e := func(s string) []string {
			if env {
				return []string{s}
			}
			return nil
		}
		return []cli.Flag{
			&cli.StringFlag{Name: "config-dir", Usage: "state directory", EnvVars: e("CONFIG_DIR")},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
		}
	}
	leaf := func(c *cli.Command) *cli.Command {
		c.Flags = append(c.Flags, globals(false)...)
		c.Description = strings.TrimSpace(c.Description+"\n\n"+fixtureExit) + "\n"
		return c
	}
	app := &cli.App{
		Name:  "tool",
		Usage: "does things",
		Description: "tool keeps a directory.\n.dotted line\n'quoted line\n\nSTATE DIRECTORY:\n   somewhere\n\nNOTES:\n   kept as a block\n\n" +
			fixtureExit,
		Flags: globals(true),
		Commands: []*cli.Command{
			{Name: "thing", Usage: "things", Subcommands: []*cli.Command{
				leaf(&cli.Command{
					Name: "add", Usage: "add a thing", ArgsUsage: "NAME --size N",
					Description: "NAME is a name.\n  an indented line\n\nEXAMPLES:\n   # Add a small thing:\n   tool thing add small --size 1\n\n   # Add a big one:\n   tool thing add big --size 100",
					Flags: []cli.Flag{
						&cli.IntFlag{Name: "size", Usage: "how big", Value: 3},
						&cli.StringSliceFlag{Name: "tag", Usage: "a tag"},
						&cli.StringFlag{Name: "listen", Usage: "address", EnvVars: []string{"TOOL_LISTEN"}},
					},
				}),
				leaf(&cli.Command{Name: "list", Usage: "list things"}),
			}},
			{Name: "secret", Hidden: true, Usage: "not shown"},
		},
	}
	return Page{
		App: app, Section: 1,
		Synopsis:         []string{"[global options] command"},
		ExtraEnvironment: []Entry{{"HOME", "home"}},
		Files:            []Entry{{"p2ptls.toml", "the state"}},
		ExitStatus:       fixtureExit,
		Examples:         "# Start:\ntool thing list",
		SeeAlso:          []string{"openssl(1)", "the README"},
		SectionHeadings:  []string{"EXIT STATUS", "STATE DIRECTORY"},
	}
}

func TestRender(t *testing.T) {
	man := Render(fixture())
	sections := regexp.MustCompile(`(?m)^\.SH (.*)$`).FindAllStringSubmatch(man, -1)
	var got []string
	for _, s := range sections {
		got = append(got, strings.Trim(s[1], `"`))
	}
	want := []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("sections %q, want %q", got, want)
	}
	for _, tc := range []struct {
		desc, re string
		count    int
	}{
		{"NAME line as lexgrog reads it", `(?m)^\.SH NAME\ntool \\- does things$`, 1},
		{"no date in .TH", `(?m)^\.TH TOOL 1 "" tool "User Commands"$`, 1},
		{"global option once, in OPTIONS", `(?m)^\.TP\n\\fB\\-\\-config\\-dir\\fR`, 1},
		{"global bool option once", `\\fB\\-\\-quiet\\fR, \\fB\\-q\\fR`, 1},
		{"each leaf once", `(?m)^\.SS "thing (add|list)"$`, 2},
		{"no hidden command", `secret`, 0},
		{"exit status once, as a section", `(?m)^\.B 2$`, 1},
		{"no EXIT STATUS block text anywhere", `EXIT STATUS:`, 0},
		{"the command's examples, under it", `(?s)\.SS "thing add".*\.B Examples\n\.PP\nAdd a small thing:\n\.PP\n\.RS 4\n\.nf\ntool thing add small \\-\\-size 1\n\.fi\n\.RE\n\.PP\nAdd a big one:\n.*\.SS "thing list"`, 1},
		{"no EXAMPLES block text", `EXAMPLES:`, 0},
		{"examples only where given", `(?m)^\.B Examples$`, 1},
		{"own options with type and default", `(?m)^\\fB\\-\\-size\\fR \\fIN\\fR\nhow big \(default 3\)\.$`, 1},
		{"slice flag repeatable", `a tag \(repeatable\)\.`, 1},
		{"placeholder for an address", `\\fB\\-\\-listen\\fR \\fIHOST:PORT\\fR`, 1},
		{"synopsis of a command", `(?m)^\.B tool thing add\nNAME \\-\\-size N$`, 1},
		{"environment from a leaf flag", `(?m)^\.B TOOL_LISTEN\nAddress\. Sets \\-\\-listen of thing add; the flag wins\.$`, 1},
		{"environment from a global flag", `(?m)^\.B CONFIG_DIR\nState directory\. Sets \\-\\-config\\-dir; the flag wins\.$`, 1},
		{"extra environment", `(?m)^\.B HOME\nhome$`, 1},
		{"a line starting with a dot is escaped", `(?m)^\\&\.dotted line$`, 1},
		{"a line starting with a quote is escaped", `(?m)^\\&'quoted line$`, 1},
		{"indented text kept literal", `(?s)\.nf\nNAME is a name\.\n  an indented line\n\.fi`, 1},
		{"a section block the page renders itself is left out", `somewhere`, 0},
		{"another block is kept", `(?s)\.B Notes\n\.RS 4\n\.nf\nkept as a block\n\.fi`, 1},
		{"see also", `(?m)^\.BR openssl \(1\),\nthe README$`, 1},
	} {
		if n := len(regexp.MustCompile(tc.re).FindAllStringIndex(man, -1)); n != tc.count {
			t.Errorf("%s: %q found %d times, want %d\n%s", tc.desc, tc.re, n, tc.count, man)
		}
	}
	if Render(fixture()) != man {
		t.Error("Render is not deterministic")
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		`a\b`:            `a\eb`,
		"--flag":         `\-\-flag`,
		".TH":            `\&.TH`,
		"'x":             `\&'x`,
		"HOST:PORT,…":    `HOST:PORT,\[u2026]`,
		"no change here": "no change here",
	} {
		if got := escapeLine(in); got != want {
			t.Errorf("escapeLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestManAndLexgrog formats the fixture with man-db: no warnings, and
// lexgrog finds the NAME section. CI installs man-db; elsewhere a missing
// tool skips.
func TestManAndLexgrog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tool.1")
	if err := os.WriteFile(p, []byte(Render(fixture())), 0o644); err != nil {
		t.Fatal(err)
	}
	rofftest.CheckPage(t, p)
}
