package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// shellTimeout bounds one shell run (start, load the completion, complete).
const shellTimeout = 60 * time.Second

// completionFixture is a state with two listeners, two mappings, a DNS
// credential and two admin tokens, made by the binary, and a working
// directory holding a file and a directory for file completion.
func completionFixture(t *testing.T) (env []string, work string) {
	t.Helper()
	root := t.TempDir()
	env = []string{"CONFIG_DIR=" + filepath.Join(root, "state"), "P2PTLS_TEST_TOKEN=0123456789abcdef0123456789"}
	for _, args := range [][]string{
		{"listener", "add", "web", "--addr", "127.0.0.1:18443"},
		{"listener", "add", "api", "--addr", "127.0.0.1:18444"},
		{"mapping", "add", "--listener", "web", "--host", "app.example.com", "--self-signed"},
		{"mapping", "add", "--listener", "api", "--host", "api.example.com", "--self-signed", "--id", "api-main"},
		{"dns-credential", "add", "cf", "--api-token-env", "P2PTLS_TEST_TOKEN"},
		{"admin", "token", "create", "ops"},
		{"admin", "token", "create", "ci"},
	} {
		if r := p2ptls(t, env, args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	work = filepath.Join(root, "work")
	if err := os.MkdirAll(filepath.Join(work, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "chain.pem"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return env, work
}

// completionCases hold for every shell. want is the exact set; with
// contains, at least those (lists other work may extend).
var completionCases = []struct {
	line     string
	want     []string
	contains bool
}{
	{line: "p2ptls mapping show ", want: []string{"app-example-com", "api-main"}},
	{line: "p2ptls mapping remove ap", want: []string{"app-example-com", "api-main"}},
	{line: "p2ptls cert issue api-main ", want: []string{"app-example-com"}},
	{line: "p2ptls listener show ", want: []string{"web", "api"}},
	{line: "p2ptls mapping add --listener ", want: []string{"web", "api"}},
	{line: "p2ptls mapping add --acme --dns-credential ", want: []string{"cf"}},
	{line: "p2ptls dns-credential test ", want: []string{"cf"}},
	{line: "p2ptls admin token revoke ", want: []string{"ci", "ops"}},
	{line: "p2ptls mapping add --ke", want: []string{"--key-file", "--key-type"}},
	{line: "p2ptls mapping add --", want: []string{"--listener", "--host", "--self-signed", "--challenge", "--output", "--help"}, contains: true},
	{line: "p2ptls mapping add --challenge ", want: []string{"http-01", "tls-alpn-01", "dns-01"}},
	{line: "p2ptls mapping add --challenge=d", want: []string{"--challenge=dns-01"}},
	{line: "p2ptls mapping add --challenge=", want: []string{"--challenge=http-01", "--challenge=tls-alpn-01", "--challenge=dns-01"}},
	{line: "p2ptls listener add web --fallback ", want: []string{"self-signed", "reject"}},
	{line: "p2ptls --output ", want: []string{"table", "json"}},
	{line: "p2ptls mapping ", want: []string{"add", "list", "show", "remove"}, contains: true},
	{line: "p2ptls completion ", want: []string{"bash", "zsh", "fish"}},
	{line: "p2ptls mapping add --cert-file ch", want: []string{"chain.pem"}},
	{line: "p2ptls --config-dir ce", want: []string{"certs"}},
	{line: "p2ptls backup --out ce", want: []string{"certs"}},
}

// shell finds a shell, or skips; in CI (CI=true) a missing shell fails.
func shell(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI installs it in .ci/run)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

func TestShellCompletion(t *testing.T) {
	env, work := completionFixture(t)
	completions, err := filepath.Abs(filepath.Join("..", "..", "completions"))
	if err != nil {
		t.Fatal(err)
	}
	env = append(env,
		"PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+t.TempDir(), "TERM=dumb", "LC_ALL=C.UTF-8")
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), shellTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env, cmd.Dir = env, work
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("%s: %v\n%s%s", args[0], err, out, stderr)
		}
		return string(out)
	}
	shells := map[string]func(t *testing.T, line string) []string{
		// bash: the words split as readline splits them ("=" on its own),
		// then the function the script registers, as complete -p shows it.
		"bash": func(t *testing.T, line string) []string {
			words := bashWords(line)
			out := run(t, append([]string{shell(t, "bash"), "--norc", "--noprofile", "-c", `source "$0" || exit 3
spec=$(complete -p p2ptls) || exit 4
fn=${spec#*-F }; fn=${fn%% *}
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$fn" p2ptls "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"`, filepath.Join(completions, "p2ptls.bash")}, words...)...)
			// What bash inserts replaces only the text after the last
			// word break: put the rest of the shell word in front to
			// compare whole words.
			cur := words[len(words)-1]
			if cur == "=" { // a word break: readline replaces nothing of it
				cur = ""
			}
			fields := strings.Fields(line + "x")
			whole := strings.TrimSuffix(fields[len(fields)-1], "x")
			keep := whole[:len(whole)-len(cur)]
			var got []string
			for _, v := range lines(out) {
				got = append(got, keep+v)
			}
			return got
		},
		// zsh: the real completion system on a pty (testdata/complete.zsh).
		"zsh": func(t *testing.T, line string) []string {
			script, _ := filepath.Abs(filepath.Join("testdata", "complete.zsh"))
			return lines(run(t, shell(t, "zsh"), "-f", script, completions, line))
		},
		// fish: "complete -C" runs fish's own completion of a line.
		"fish": func(t *testing.T, line string) []string {
			out := run(t, shell(t, "fish"), "--no-config", "-c", `source $argv[1]; and complete -C $argv[2]`,
				filepath.Join(completions, "p2ptls.fish"), line)
			var got []string
			for _, l := range lines(out) {
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
			return got
		},
	}
	for _, name := range []string{"bash", "zsh", "fish"} {
		t.Run(name, func(t *testing.T) {
			shell(t, name)
			for _, tc := range completionCases {
				t.Run(tc.line, func(t *testing.T) {
					var got []string
					for _, v := range shells[name](t, tc.line) {
						if v = strings.TrimSuffix(v, "/"); !slices.Contains(got, v) {
							got = append(got, v)
						}
					}
					for _, w := range tc.want {
						if !slices.Contains(got, w) {
							t.Errorf("%s: %q completes %q, lacks %q", name, tc.line, got, w)
						}
					}
					if !tc.contains && len(got) != len(tc.want) {
						t.Errorf("%s: %q completes %q, want exactly %q", name, tc.line, got, tc.want)
					}
					if slices.Contains(got, "help") || slices.Contains(got, "h") {
						t.Errorf("%s: %q offers help: %q", name, tc.line, got)
					}
				})
			}
		})
	}
}

// bashWords splits a line as readline fills COMP_WORDS: at blanks, with
// "=" a word of its own; a trailing blank starts an empty word.
func bashWords(line string) []string {
	var words []string
	for _, f := range strings.Split(line, " ") {
		parts := strings.Split(f, "=")
		for i, p := range parts {
			if i > 0 {
				words = append(words, "=")
			}
			if p != "" || i == 0 {
				words = append(words, p)
			}
		}
	}
	return words
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out
}
