// Package roff writes a man page (man(7) macros) from a urfave/cli command
// tree: every command once, with its own options only, the global options
// once, and the sections a man page has. The output is deterministic: no
// date, no version, the tree's order.
package roff

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Entry is one tagged paragraph (.TP): a file, a variable, an exit code.
type Entry struct{ Tag, Text string }

// Page is what the generator needs beyond the command tree.
type Page struct {
	App     *cli.App
	Section int
	// Synopsis lines after the program name, roff-escaped by Render.
	Synopsis []string
	// Environment describes variables by name; variables bound to flags
	// are found in the tree and get the flag's usage when not described.
	Environment map[string]string
	// ExtraEnvironment are variables no flag reads.
	ExtraEnvironment []Entry
	Files            []Entry
	// ExitStatus is parsed from a help block ("   0  success").
	ExitStatus string
	// Examples is a help block: "# comment" lines and commands.
	Examples string
	SeeAlso  []string
	// SectionHeadings are help blocks (HEADING:) of the top-level
	// description that the page renders as sections of their own, left
	// out of DESCRIPTION.
	SectionHeadings []string
}

// Help blocks headed like these in a command's description are rendered
// as the command's examples, or left out (exit status is a section).
const (
	headingExamples   = "EXAMPLES"
	headingExitStatus = "EXIT STATUS"
)

// Render returns the man page.
func Render(p Page) string {
	var b strings.Builder
	app := p.App
	name := app.Name
	fmt.Fprintf(&b, ".TH %s %d \"\" %s \"User Commands\"\n", strings.ToUpper(name), p.Section, quote(name))
	// No hyphenation and a ragged right: option and variable names stay
	// whole, so they can be searched for and copied.
	b.WriteString(".nh\n.ad l\n")
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", name, escape(app.Usage))
	b.WriteString(".SH SYNOPSIS\n")
	for i, s := range p.Synopsis {
		if i > 0 {
			b.WriteString(".br\n")
		}
		fmt.Fprintf(&b, ".B %s\n%s\n", name, escape(s))
	}
	b.WriteString(".SH DESCRIPTION\n")
	writeText(&b, app.Description, p.SectionHeadings)

	global := map[string]bool{}
	for _, f := range app.Flags {
		global[f.Names()[0]] = true
	}
	b.WriteString(".SH COMMANDS\n")
	walk(app.Commands, name, func(full string, c *cli.Command) { writeCommand(&b, full, c, global) })

	b.WriteString(".SH OPTIONS\n")
	b.WriteString("These global options are accepted before and after the command name.\n")
	writeFlags(&b, app.Flags)

	b.WriteString(".SH ENVIRONMENT\n")
	for _, e := range environment(p) {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", e.Tag, escape(e.Text))
	}
	if len(p.Files) > 0 {
		b.WriteString(".SH FILES\n")
		writeEntries(&b, p.Files)
	}
	if p.ExitStatus != "" {
		b.WriteString(".SH \"EXIT STATUS\"\n")
		writeEntries(&b, exitCodes(p.ExitStatus))
	}
	if p.Examples != "" {
		b.WriteString(".SH EXAMPLES\n")
		writeExamples(&b, p.Examples)
	}
	if len(p.SeeAlso) > 0 {
		b.WriteString(".SH \"SEE ALSO\"\n")
		for i, s := range p.SeeAlso {
			sep := ","
			if i == len(p.SeeAlso)-1 {
				sep = ""
			}
			if n, sec, ok := strings.Cut(strings.TrimSuffix(s, ")"), "("); ok {
				fmt.Fprintf(&b, ".BR %s (%s)%s\n", escape(n), sec, sep)
			} else {
				fmt.Fprintf(&b, "%s%s\n", escape(s), sep)
			}
		}
	}
	return b.String()
}

// walk calls fn for every visible leaf command, in the tree's order.
func walk(cmds []*cli.Command, parent string, fn func(full string, c *cli.Command)) {
	for _, c := range cmds {
		if c.Hidden || c.Name == "help" {
			continue
		}
		full := parent + " " + c.Name
		if subs := slices.DeleteFunc(slices.Clone(c.Subcommands), func(s *cli.Command) bool { return s.Name == "help" }); len(subs) > 0 {
			walk(subs, full, fn)
			continue
		}
		fn(full, c)
	}
}

func writeCommand(b *strings.Builder, full string, c *cli.Command, global map[string]bool) {
	fmt.Fprintf(b, ".SS %s\n", quote(strings.SplitN(full, " ", 2)[1]))
	var own []cli.Flag
	for _, f := range c.Flags {
		if !global[f.Names()[0]] && visible(f) {
			own = append(own, f)
		}
	}
	args := strings.TrimSpace(c.ArgsUsage)
	if args == "" && len(own) > 0 {
		args = "[options]"
	}
	fmt.Fprintf(b, ".B %s\n", escape(full))
	if args != "" {
		fmt.Fprintf(b, "%s\n", escape(args))
	}
	b.WriteString(".PP\n")
	b.WriteString(escape(sentence(c.Usage)) + "\n")
	examples := writeText(b, c.Description, []string{headingExitStatus, headingExamples})
	if len(own) > 0 {
		b.WriteString(".PP\n.B Options\n.RS\n")
		writeFlags(b, own)
		b.WriteString(".RE\n")
	}
	if examples != "" {
		b.WriteString(".PP\n.B Examples\n")
		writeExamples(b, examples)
	}
}

// sentence makes a usage line read as one: capitalised, with a full stop.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func visible(f cli.Flag) bool {
	vf, ok := f.(cli.VisibleFlag)
	return !ok || vf.IsVisible()
}

func writeFlags(b *strings.Builder, flags []cli.Flag) {
	for _, f := range flags {
		if !visible(f) {
			continue
		}
		df, ok := f.(cli.DocGenerationFlag)
		if !ok {
			continue
		}
		var names []string
		for _, n := range f.Names() {
			if len(n) == 1 {
				names = append(names, `\fB\-`+n+`\fR`)
			} else {
				names = append(names, `\fB\-\-`+escape(n)+`\fR`)
			}
		}
		tag := strings.Join(names, ", ")
		if df.TakesValue() {
			tag += ` \fI` + placeholder(f) + `\fR`
		}
		text := df.GetUsage()
		var notes []string
		if v := df.GetValue(); df.TakesValue() && v != "" && v != `""` {
			notes = append(notes, "default "+strings.Trim(v, `"`))
		}
		if sf, ok := f.(cli.DocGenerationSliceFlag); ok && sf.IsSliceFlag() && !strings.Contains(text, "repeatable") {
			notes = append(notes, "repeatable")
		}
		if env := df.GetEnvVars(); len(env) > 0 {
			notes = append(notes, "environment "+strings.Join(env, ", "))
		}
		if len(notes) > 0 {
			text += " (" + strings.Join(notes, "; ") + ")"
		}
		if !strings.HasSuffix(text, ".") {
			text += "."
		}
		fmt.Fprintf(b, ".TP\n%s\n%s\n", tag, escape(text))
	}
}

// placeholder names a flag's value by its type.
func placeholder(f cli.Flag) string {
	switch f.(type) {
	case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag:
		return "N"
	case *cli.DurationFlag:
		return "DURATION"
	}
	name := f.Names()[0]
	switch {
	case strings.HasSuffix(name, "-file") || name == "out":
		return "FILE"
	case strings.HasSuffix(name, "-dir"):
		return "DIR"
	case strings.HasSuffix(name, "url") || name == "upstream":
		return "URL"
	case strings.HasSuffix(name, "addr") || name == "listen" || strings.HasSuffix(name, "-listen"):
		return "HOST:PORT"
	}
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// environment lists every variable a flag reads, and the extra ones,
// sorted by name; each says which flags it sets.
func environment(p Page) []Entry {
	type use struct {
		text  string
		flags []string
	}
	uses := map[string]*use{}
	note := func(where string, f cli.Flag) {
		df, ok := f.(cli.DocGenerationFlag)
		if !ok {
			return
		}
		for _, env := range df.GetEnvVars() {
			u := uses[env]
			if u == nil {
				u = &use{text: df.GetUsage()}
				uses[env] = u
			}
			flag := "--" + f.Names()[0] + where
			if !slices.Contains(u.flags, flag) {
				u.flags = append(u.flags, flag)
			}
		}
	}
	for _, f := range p.App.Flags {
		note("", f)
	}
	byFlag := map[string][]string{}
	walk(p.App.Commands, "", func(full string, c *cli.Command) {
		for _, f := range c.Flags {
			if df, ok := f.(cli.DocGenerationFlag); ok && len(df.GetEnvVars()) > 0 {
				key := df.GetEnvVars()[0] + " --" + f.Names()[0]
				byFlag[key] = append(byFlag[key], strings.TrimSpace(full))
				note("", f)
			}
		}
	})
	var out []Entry
	for env, u := range uses {
		text := u.text
		if t, ok := p.Environment[env]; ok {
			text = t
		}
		var sets []string
		for _, fl := range u.flags {
			if cmds := byFlag[env+" "+fl]; len(cmds) > 0 {
				sets = append(sets, fl+" of "+strings.Join(cmds, ", "))
			} else {
				sets = append(sets, fl)
			}
		}
		out = append(out, Entry{env, sentence(text) + " Sets " + strings.Join(sets, "; ") + "; the flag wins."})
	}
	out = append(out, p.ExtraEnvironment...)
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Tag, b.Tag) })
	return out
}

func writeEntries(b *strings.Builder, es []Entry) {
	for _, e := range es {
		fmt.Fprintf(b, ".TP\n.B %s\n%s\n", quote(e.Tag), escape(e.Text))
	}
}

// exitCodes parses "   0  success" lines.
func exitCodes(block string) []Entry {
	var out []Entry
	for _, l := range strings.Split(block, "\n") {
		fields := strings.Fields(l)
		if len(fields) < 2 || heading.MatchString(strings.TrimSpace(l)) {
			continue
		}
		out = append(out, Entry{fields[0], strings.Join(fields[1:], " ")})
	}
	return out
}

// writeExamples renders "# comment" lines as text and the commands after
// each as a literal block.
func writeExamples(b *strings.Builder, block string) {
	var cmds []string
	flush := func() {
		if len(cmds) == 0 {
			return
		}
		b.WriteString(".PP\n.RS 4\n.nf\n")
		for _, c := range cmds {
			b.WriteString(escapeLine(c) + "\n")
		}
		b.WriteString(".fi\n.RE\n")
		cmds = nil
	}
	for _, l := range dedent(strings.Split(strings.Trim(block, "\n"), "\n")) {
		switch t := strings.TrimSpace(l); {
		case t == "":
			flush()
		case strings.HasPrefix(t, "#"):
			flush()
			b.WriteString(".PP\n" + escape(strings.TrimSpace(strings.TrimPrefix(t, "#"))) + "\n")
		default:
			cmds = append(cmds, l)
		}
	}
	flush()
}

// heading matches the first line of a help block: "EXIT STATUS:".
var heading = regexp.MustCompile(`^([A-Z][A-Z0-9 /-]*[A-Z0-9]):$`)

// writeText renders help text: paragraphs (filled, or literal when a line
// is indented) and HEADING: blocks of indented lines. Blocks headed by one
// of skip are left out; the examples block is returned.
func writeText(b *strings.Builder, text string, skip []string) (examples string) {
	lines := strings.Split(strings.ReplaceAll(text, "\r", ""), "\n")
	var para []string
	flush := func() {
		if len(para) == 0 {
			return
		}
		literal := slices.ContainsFunc(para, func(l string) bool { return strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") })
		if literal {
			b.WriteString(".PP\n.nf\n")
			for _, l := range para {
				b.WriteString(escapeLine(l) + "\n")
			}
			b.WriteString(".fi\n")
		} else {
			b.WriteString(".PP\n")
			for _, l := range para {
				b.WriteString(escape(strings.TrimSpace(l)) + "\n")
			}
		}
		para = nil
	}
	for i := 0; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], " \t")
		m := heading.FindStringSubmatch(l)
		if m == nil {
			if l == "" {
				flush()
			} else {
				para = append(para, l)
			}
			continue
		}
		flush()
		var body []string
		for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || strings.HasPrefix(lines[i+1], " ")) {
			i++
			body = append(body, strings.TrimRight(lines[i], " \t"))
		}
		for len(body) > 0 && body[len(body)-1] == "" {
			body = body[:len(body)-1]
		}
		switch {
		case m[1] == headingExamples:
			examples = strings.Join(body, "\n")
		case slices.Contains(skip, m[1]):
		default:
			fmt.Fprintf(b, ".PP\n.B %s\n.RS 4\n.nf\n", quote(titleCase(m[1])))
			for _, l := range dedent(body) {
				b.WriteString(escapeLine(l) + "\n")
			}
			b.WriteString(".fi\n.RE\n")
		}
	}
	flush()
	return examples
}

func titleCase(s string) string { return s[:1] + strings.ToLower(s[1:]) }

// dedent removes the indentation the lines share.
func dedent(lines []string) []string {
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if indent < 0 || n < indent {
			indent = n
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) >= indent && indent > 0 {
			l = l[indent:]
		}
		out[i] = l
	}
	return out
}

// escape makes text safe as roff input lines: backslashes and hyphens
// escaped (so options copy as ASCII), and a line never starting with a
// control character.
func escape(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = escapeLine(l)
	}
	return strings.Join(lines, "\n")
}

func escapeLine(l string) string {
	l = strings.ReplaceAll(l, `\`, `\e`)
	l = strings.ReplaceAll(l, "-", `\-`)
	if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
		l = `\&` + l
	}
	// Non-ASCII as groff's named Unicode characters: the page then reads
	// the same whatever encoding the formatter assumes.
	var b strings.Builder
	for _, r := range l {
		if r > 127 {
			fmt.Fprintf(&b, `\[u%04X]`, r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// quote makes a macro argument: escaped, quoted when it has spaces.
func quote(s string) string {
	s = strings.ReplaceAll(escapeLine(s), `"`, `\(dq`)
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}
