package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The paths the units name on a real host; the tests substitute their own.
const (
	unitBinary  = "/usr/local/bin/p2ptls"
	unitHome    = "/var/lib/p2ptls" // StateDirectory=p2ptls, the user's home
	unitState   = "/var/lib/p2ptls/state"
	unitBackups = "/var/backups/p2ptls"
	unitUser    = "p2ptls"
)

var (
	unitServices = []string{"p2ptls.service", "p2ptls-renew.service", "p2ptls-backup.service"}
	unitTimers   = []string{"p2ptls-renew.timer", "p2ptls-backup.timer"}
)

// unitDropIn is the drop-in for p2ptls-backup.service that encrypts.
const unitDropIn = "encrypted-backup.conf"

// toolOrSkip finds a tool, or skips; in CI (CI=true) a missing tool fails,
// as the browser and completion tests do.
func toolOrSkip(t *testing.T, name string) string {
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

// unitEntry is one Key=Value line of a unit file.
type unitEntry struct {
	section, key, value string
	line                int
}

type unitFile struct {
	path    string
	entries []unitEntry
}

// readUnit parses a unit file as systemd does for what these units use:
// sections, Key=Value lines, # and ; comments. A line continuation is
// refused, so that the tests never read a value differently from systemd.
func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{path: path}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: a line continuation; write the value on one line", path, i+1)
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not Key=Value inside a section: %q", path, i+1, line)
		}
		u.entries = append(u.entries, unitEntry{section, strings.TrimSpace(k), strings.TrimSpace(v), i + 1})
	}
	return u
}

// values are every value of section.key, in order.
func (u unitFile) values(section, key string) []string {
	var vs []string
	for _, e := range u.entries {
		if e.section == section && e.key == key {
			vs = append(vs, e.value)
		}
	}
	return vs
}

// value is the one value of section.key ("" when unset); set twice fails.
func (u unitFile) value(t *testing.T, section, key string) string {
	t.Helper()
	vs := u.values(section, key)
	if len(vs) > 1 {
		t.Fatalf("%s: %s.%s is set %d times", u.path, section, key, len(vs))
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// splitExec splits an Exec*= value into argv the way systemd does for the
// syntax these units use: words, '…' and "…" quoting, %% for a literal %.
// Anything else systemd would interpret (a backslash, another specifier, a
// prefix such as - or +) is refused rather than guessed.
func splitExec(v string) ([]string, error) {
	var argv []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for i := 0; i < len(v); i++ {
		c := rune(v[i])
		switch {
		case c == '\\':
			return nil, fmt.Errorf("backslash at %d: not supported by this test", i)
		case c == '$' && i+1 < len(v) && (v[i+1] == '{' || v[i+1] == '$'):
			return nil, fmt.Errorf("systemd variable expansion at %d: not supported by this test", i)
		case c == '%':
			if i+1 >= len(v) || v[i+1] != '%' {
				return nil, fmt.Errorf("specifier at %d: only %%%% is supported by this test", i)
			}
			cur.WriteByte('%')
			inWord = true
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				argv = append(argv, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		argv = append(argv, cur.String())
	}
	if len(argv) == 0 || !strings.HasPrefix(argv[0], "/") {
		return nil, fmt.Errorf("the command %q is not an absolute path without a prefix", argv)
	}
	return argv, nil
}

// unitHost maps the units' host paths to a test's own.
type unitHost struct {
	binary, state, backups string
}

func (h unitHost) replace(s string) string {
	return strings.NewReplacer(unitBinary, h.binary, unitState, h.state, unitBackups, h.backups).Replace(s)
}

// buildP2ptls builds the binary the units run into dir.
func buildP2ptls(t *testing.T, dir string) string {
	t.Helper()
	goBin := toolOrSkip(t, "go")
	bin := filepath.Join(dir, "p2ptls")
	cmd := exec.Command(goBin, "build", "-o", bin, "../cmd/p2ptls")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build p2ptls: %v\n%s", err, out)
	}
	return bin
}

// installUnits copies every unit into dir with the host paths replaced.
func installUnits(t *testing.T, h unitHost, dir string) []string {
	t.Helper()
	var paths []string
	for _, name := range append(slices.Clone(unitServices), unitTimers...) {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(h.replace(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	// The drop-in, where systemd looks for it beside the unit.
	b, err := os.ReadFile(filepath.Join("systemd", unitDropIn))
	if err != nil {
		t.Fatal(err)
	}
	dropDir := filepath.Join(dir, "p2ptls-backup.service.d")
	if err := os.Mkdir(dropDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropDir, unitDropIn), []byte(h.replace(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
	return paths
}

// verifyUnits runs systemd-analyze verify and returns what it reported:
// systemd only warns (exit 0) about an unknown key, a misspelt value or a
// bad syscall group and ignores the line, so any output at all counts.
func verifyUnits(t *testing.T, analyze string, paths []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%v\n%s", err, out)
	}
	return string(out)
}

func TestSystemdUnits(t *testing.T) {
	tmp := t.TempDir()
	h := unitHost{
		binary:  buildP2ptls(t, tmp),
		state:   filepath.Join(tmp, "state"),
		backups: filepath.Join(tmp, "backups"),
	}
	units := map[string]unitFile{}
	for _, name := range append(append(slices.Clone(unitServices), unitTimers...), unitDropIn) {
		units[name] = readUnit(t, filepath.Join("systemd", name))
	}

	t.Run("verify", func(t *testing.T) {
		analyze := toolOrSkip(t, "systemd-analyze")
		paths := installUnits(t, h, t.TempDir())
		if out := verifyUnits(t, analyze, paths); out != "" {
			t.Fatalf("systemd-analyze verify reported:\n%s", out)
		}
	})

	// The check above passes only because systemd found nothing: the same
	// check on a unit with a misspelt value must report it.
	t.Run("verify reports a misspelt value", func(t *testing.T) {
		analyze := toolOrSkip(t, "systemd-analyze")
		dir := t.TempDir()
		paths := installUnits(t, h, dir)
		b, err := os.ReadFile(paths[0])
		if err != nil {
			t.Fatal(err)
		}
		broken := strings.Replace(string(b), "ProtectSystem=strict", "ProtectSystem=stricter", 1)
		if broken == string(b) {
			t.Fatal("p2ptls.service has no ProtectSystem=strict to break")
		}
		if err := os.WriteFile(paths[0], []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := verifyUnits(t, analyze, paths[:1]); !strings.Contains(out, "stricter") {
			t.Fatalf("systemd-analyze verify did not report the misspelt ProtectSystem: %q", out)
		}
	})

	// Exposure scores of Debian 12's systemd 252 for these units (0-100;
	// shown as 1.5 and 0.3): a weaker sandbox raises them.
	t.Run("security", func(t *testing.T) {
		analyze := toolOrSkip(t, "systemd-analyze")
		dir := t.TempDir()
		installUnits(t, h, dir)
		for name, threshold := range map[string]int{"p2ptls.service": 15, "p2ptls-renew.service": 15, "p2ptls-backup.service": 3} {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			out, err := exec.CommandContext(ctx, analyze, "security", "--offline=yes", "--no-pager",
				fmt.Sprintf("--threshold=%d", threshold), filepath.Join(dir, name)).CombinedOutput()
			cancel()
			if err != nil {
				t.Errorf("%s: exposure above %d.%d (%v):\n%s", name, threshold/10, threshold%10, err, failedChecks(out))
			}
		}
	})

	t.Run("every command runs the installed binary", func(t *testing.T) {
		for _, name := range append(slices.Clone(unitServices), unitDropIn) {
			u := units[name]
			for _, e := range u.entries {
				if !strings.HasPrefix(e.key, "Exec") || e.value == "" { // an empty one resets the list
					continue
				}
				if _, err := splitExec(e.value); err != nil {
					t.Errorf("%s:%d: %s: %v", name, e.line, e.key, err)
				}
				// A p2ptls named by another path would verify here, where
				// the test substitutes only this one, and fail on a host.
				for _, m := range regexp.MustCompile(`\S*p2ptls(\s|$|')`).FindAllString(e.value, -1) {
					word := strings.TrimRight(m, " \t'")
					if strings.Contains(word, "/") && word != unitBinary {
						t.Errorf("%s:%d: runs %s, not %s", name, e.line, word, unitBinary)
					}
				}
			}
		}
	})

	// serve, cron's renew and the backup share the lock and the files:
	// one user, one state directory, one environment file.
	t.Run("one user and state for every unit", func(t *testing.T) {
		for _, name := range unitServices {
			u := units[name]
			for key, want := range map[string]string{
				"User": unitUser, "Group": unitUser, "StateDirectory": "p2ptls", "StateDirectoryMode": "0700",
				"UMask": "0077", "EnvironmentFile": "-/etc/p2ptls/env", "Environment": "CONFIG_DIR=" + unitState,
				"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
				"PrivateDevices": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
				"MemoryDenyWriteExecute": "yes", "DynamicUser": "",
			} {
				if got := u.value(t, "Service", key); got != want {
					t.Errorf("%s: %s=%q, want %q", name, key, got, want)
				}
			}
			if got := u.values("Service", "SystemCallFilter"); len(got) == 0 || got[0] != "@system-service" {
				t.Errorf("%s: SystemCallFilter=%q, want @system-service first", name, got)
			}
		}
		serve := units["p2ptls.service"]
		for key, want := range map[string]string{
			"AmbientCapabilities": "CAP_NET_BIND_SERVICE", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
			"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "Restart": "on-failure", "KillSignal": "SIGTERM",
			"ExecReload": "", // serve follows the state by itself; SIGHUP would end it
		} {
			if got := serve.value(t, "Service", key); got != want {
				t.Errorf("p2ptls.service: %s=%q, want %q", key, got, want)
			}
		}
	})

	t.Run("timers", func(t *testing.T) {
		for _, name := range unitTimers {
			u := units[name]
			target := u.value(t, "Timer", "Unit")
			if want := strings.TrimSuffix(name, ".timer") + ".service"; target != want {
				t.Errorf("%s: Unit=%q, want %q", name, target, want)
			}
			// systemd-analyze verify does not check that a timer's unit exists.
			if _, ok := units[target]; !ok {
				t.Errorf("%s starts %q, which deploy/systemd does not have", name, target)
			}
			for key, want := range map[string]string{"Persistent": "true"} {
				if got := u.value(t, "Timer", key); got != want {
					t.Errorf("%s: %s=%q, want %q", name, key, got, want)
				}
			}
			if u.value(t, "Timer", "OnCalendar") == "" || u.value(t, "Timer", "RandomizedDelaySec") == "" {
				t.Errorf("%s: needs OnCalendar and RandomizedDelaySec", name)
			}
			if got := u.value(t, "Install", "WantedBy"); got != "timers.target" {
				t.Errorf("%s: WantedBy=%q, want timers.target", name, got)
			}
			if got := units[target].value(t, "Service", "Type"); got != "oneshot" {
				t.Errorf("%s: Type=%q, want oneshot", target, got)
			}
		}
		// The timer waits a random time already; the tool's own sleep would double it.
		renew := units["p2ptls-renew.service"].value(t, "Service", "ExecStart")
		if !strings.Contains(renew, "--no-random-sleep") {
			t.Errorf("p2ptls-renew.service runs %q without --no-random-sleep", renew)
		}
	})

	t.Run("twice a day", func(t *testing.T) {
		analyze := toolOrSkip(t, "systemd-analyze")
		cal := units["p2ptls-renew.timer"].value(t, "Timer", "OnCalendar")
		cmd := exec.Command(analyze, "calendar", "--iterations=3", cal)
		cmd.Env = append(os.Environ(), "TZ=UTC")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze calendar %q: %v\n%s", cal, err, out)
		}
		// The next three elapses, 12 h apart.
		var times []time.Time
		for _, m := range regexp.MustCompile(`(?m)^\s*(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC$`).FindAllStringSubmatch(string(out), -1) {
			tm, err := time.Parse(time.DateTime, m[1])
			if err != nil {
				t.Fatal(err)
			}
			times = append(times, tm)
		}
		if len(times) != 3 {
			t.Fatalf("no three elapses in:\n%s", out)
		}
		for i := 1; i < len(times); i++ {
			if d := times[i].Sub(times[i-1]); d != 12*time.Hour {
				t.Errorf("renew runs %v apart, want 12h:\n%s", d, out)
			}
		}
	})

	t.Run("sysusers and tmpfiles", func(t *testing.T) {
		sysusers := toolOrSkip(t, "systemd-sysusers")
		tmpfiles := toolOrSkip(t, "systemd-tmpfiles")
		if os.Geteuid() != 0 {
			if os.Getenv("CI") == "true" {
				t.Fatal("systemd-tmpfiles --root needs root to give the directory to p2ptls")
			}
			t.Skip("systemd-tmpfiles --root needs root")
		}
		root := t.TempDir()
		if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		conf, _ := filepath.Abs(filepath.Join("systemd", "p2ptls.sysusers"))
		if out, err := exec.Command(sysusers, "--root="+root, conf).CombinedOutput(); err != nil {
			t.Fatalf("systemd-sysusers: %v\n%s", err, out)
		}
		passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
		if err != nil {
			t.Fatal(err)
		}
		var uid, gid int
		found := false
		for _, line := range strings.Split(string(passwd), "\n") {
			f := strings.Split(line, ":")
			if len(f) == 7 && f[0] == unitUser {
				found = true
				fmt.Sscan(f[2], &uid)
				fmt.Sscan(f[3], &gid)
				if f[5] != unitHome || f[6] != "/usr/sbin/nologin" {
					t.Errorf("user %s: home %q shell %q, want %s and /usr/sbin/nologin", unitUser, f[5], f[6], unitHome)
				}
			}
		}
		if !found || uid == 0 {
			t.Fatalf("systemd-sysusers made no system user %s:\n%s", unitUser, passwd)
		}
		conf, _ = filepath.Abs(filepath.Join("systemd", "p2ptls.tmpfiles"))
		out, err := exec.Command(tmpfiles, "--root="+root, "--create", conf).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Fatalf("systemd-tmpfiles --create: %v\n%s", err, out)
		}
		// The backup unit's writable directory, which must exist before it
		// starts, and the StateDirectory, where p2ptls commands run as
		// p2ptls create the state before serve first starts.
		rw := units["p2ptls-backup.service"].value(t, "Service", "ReadWritePaths")
		for _, dir := range []string{rw, unitHome} {
			fi, err := os.Stat(filepath.Join(root, dir))
			if err != nil {
				t.Errorf("tmpfiles did not create %s: %v", dir, err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if !fi.IsDir() || fi.Mode().Perm() != 0o700 || int(st.Uid) != uid || int(st.Gid) != gid {
				t.Errorf("%s: %v owned by %d:%d, want a 0700 directory of %d:%d", dir, fi.Mode(), st.Uid, st.Gid, uid, gid)
			}
		}
	})

	// The command lines themselves, run as systemd would run them (argv
	// split, %% unescaped, the unit's environment) against a real state.
	env := func(u unitFile, extra ...string) []string {
		e := []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "LC_ALL=C"}
		for _, v := range u.values("Service", "Environment") {
			e = append(e, h.replace(v))
		}
		return append(e, extra...)
	}
	run := func(t *testing.T, u unitFile, key string, extra ...string) string {
		t.Helper()
		argv, err := splitExec(h.replace(u.value(t, "Service", key)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = env(u, extra...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", key, argv, err, out)
		}
		return string(out)
	}
	p2ptls := func(t *testing.T, args ...string) {
		t.Helper()
		cmd := exec.Command(h.binary, args...)
		cmd.Env = []string{"CONFIG_DIR=" + h.state, "HOME=/nonexistent"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("p2ptls %v: %v\n%s", args, err, out)
		}
	}
	p2ptls(t, "listener", "add", "web", "--addr", unitFreeAddr(t))
	p2ptls(t, "mapping", "add", "--listener", "web", "--host", "app.example.com", "--self-signed")
	p2ptls(t, "ca", "init")

	t.Run("renew runs", func(t *testing.T) {
		run(t, units["p2ptls-renew.service"], "ExecStart")
	})

	t.Run("backup writes a dated archive and keeps the 14 newest", func(t *testing.T) {
		u := units["p2ptls-backup.service"]
		if err := os.Mkdir(h.backups, 0o700); err != nil {
			t.Fatal(err)
		}
		if out := run(t, u, "ExecStart"); out != "" {
			t.Errorf("backup --quiet printed:\n%s", out)
		}
		names := backupNames(t, h.backups)
		if len(names) != 1 || !regexp.MustCompile(`^p2ptls-\d{8}T\d{6}Z\.tar\.gz$`).MatchString(names[0]) {
			t.Fatalf("backups = %q, want one p2ptls-YYYYMMDDTHHMMSSZ.tar.gz", names)
		}
		archive := filepath.Join(h.backups, names[0])
		if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("archive: %v, %v; want 0600", fi.Mode(), err)
		}
		cmd := exec.Command(h.binary, "restore", archive, "--dry-run")
		cmd.Env = []string{"CONFIG_DIR=" + filepath.Join(t.TempDir(), "restored"), "HOME=/nonexistent"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the archive does not restore: %v\n%s", err, out)
		}

		run(t, u, "ExecStartPost")
		if got := backupNames(t, h.backups); !slices.Equal(got, names) {
			t.Fatalf("pruning one backup left %q", got)
		}
		// 20 older ones (days 1-20 of a past month, the newest last) and
		// files that are not backups.
		old := time.Now().Add(-30 * 24 * time.Hour)
		var want []string
		for day := 1; day <= 20; day++ {
			name := fmt.Sprintf("p2ptls-202511%02dT020000Z.tar.gz", day)
			if day%2 == 0 {
				name += ".age"
			}
			p := filepath.Join(h.backups, name)
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			mt := old.Add(time.Duration(day) * time.Hour)
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
			if day > 7 {
				want = append(want, name)
			}
		}
		others := []string{"notes.txt", ".p2ptls-x.tar.gz.tmp-1"}
		for _, name := range others {
			if err := os.WriteFile(filepath.Join(h.backups, name), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		run(t, u, "ExecStartPost")
		want = append(want, names[0])
		sort.Strings(want)
		if got := backupNames(t, h.backups); !slices.Equal(got, want) {
			t.Errorf("after pruning: %q, want the 14 newest %q", got, want)
		}
		for _, name := range others {
			if _, err := os.Stat(filepath.Join(h.backups, name)); err != nil {
				t.Errorf("pruning removed %s: %v", name, err)
			}
		}
	})

	// The drop-in replaces ExecStart (an empty one first, as systemd
	// requires) and hands the passphrase over as a credential.
	t.Run("encrypted backup drop-in", func(t *testing.T) {
		d := units[unitDropIn]
		execs := d.values("Service", "ExecStart")
		if len(execs) != 2 || execs[0] != "" {
			t.Fatalf("%s: ExecStart=%q, want an empty one, then the command", unitDropIn, execs)
		}
		name, file, ok := strings.Cut(d.value(t, "Service", "LoadCredential"), ":")
		if !ok || !strings.HasPrefix(file, "/etc/p2ptls/") {
			t.Fatalf("%s: LoadCredential=%q", unitDropIn, d.value(t, "Service", "LoadCredential"))
		}
		creds := t.TempDir()
		if err := os.WriteFile(filepath.Join(creds, name), []byte("correct horse battery staple\n"), 0o400); err != nil {
			t.Fatal(err)
		}
		backups := t.TempDir()
		hh := h
		hh.backups = backups
		argv, err := splitExec(hh.replace(execs[1]))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = env(units["p2ptls-backup.service"], "CREDENTIALS_DIRECTORY="+creds)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
		names := backupNames(t, backups)
		if len(names) != 1 || !regexp.MustCompile(`^p2ptls-\d{8}T\d{6}Z\.tar\.gz\.age$`).MatchString(names[0]) {
			t.Fatalf("backups = %q, want one p2ptls-YYYYMMDDTHHMMSSZ.tar.gz.age", names)
		}
		restore := exec.Command(h.binary, "restore", filepath.Join(backups, names[0]), "--dry-run", "--passphrase-file", filepath.Join(creds, name))
		restore.Env = []string{"CONFIG_DIR=" + filepath.Join(t.TempDir(), "restored"), "HOME=/nonexistent"}
		if out, err := restore.CombinedOutput(); err != nil {
			t.Fatalf("the encrypted archive does not restore with the passphrase: %v\n%s", err, out)
		}
	})

	// The unit stops serve with KillSignal and kills it TimeoutStopSec
	// later: serve must be gone, with exit 0, well before that.
	t.Run("serve stops on KillSignal within TimeoutStopSec", func(t *testing.T) {
		u := units["p2ptls.service"]
		if sig := u.value(t, "Service", "KillSignal"); sig != "SIGTERM" {
			t.Fatalf("KillSignal=%s; this test sends SIGTERM", sig)
		}
		stop, err := time.ParseDuration(u.value(t, "Service", "TimeoutStopSec"))
		if err != nil {
			t.Fatalf("TimeoutStopSec: %v", err)
		}
		argv, err := splitExec(h.replace(u.value(t, "Service", "ExecStart")))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env(u, "MANAGEMENT_LISTEN="+unitFreeAddr(t))
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		var mu sync.Mutex
		ready, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stderr)
			var once sync.Once
			for sc.Scan() {
				mu.Lock()
				logs.WriteString(sc.Text() + "\n")
				mu.Unlock()
				if strings.Contains(sc.Text(), "management listening") {
					once.Do(func() { close(ready) })
				}
			}
			io.Copy(io.Discard, stderr)
		}()
		output := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
		select {
		case <-ready:
		case <-done:
			cmd.Wait()
			t.Fatalf("serve exited before listening:\n%s", output())
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("serve did not start listening:\n%s", output())
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(stop):
			cmd.Process.Kill()
			<-done
			cmd.Wait()
			t.Fatalf("serve still ran %v after SIGTERM, when systemd kills it:\n%s", stop, output())
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("serve did not exit 0 on SIGTERM (systemd would count a failure): %v\n%s", err, output())
		}
	})

	t.Run("boot", func(t *testing.T) { testSystemdBoot(t, h.binary) })

	// RestartPreventExitStatus=2 holds serve's exit code for a setting it
	// cannot start with: no restart loop on a configuration error.
	t.Run("serve exits 2 on a bad setting", func(t *testing.T) {
		u := units["p2ptls.service"]
		if got := u.value(t, "Service", "RestartPreventExitStatus"); got != "2" {
			t.Fatalf("RestartPreventExitStatus=%q", got)
		}
		argv, err := splitExec(h.replace(u.value(t, "Service", "ExecStart")))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = env(u, "MANAGEMENT_LISTEN="+unitFreeAddr(t), "MANAGEMENT_TLS_MODE=bogus")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("serve with MANAGEMENT_TLS_MODE=bogus: %v, want exit 2\n%s", err, out)
		}
	})
}

// backupNames lists the archives in dir, sorted.
func backupNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if strings.HasPrefix(de.Name(), "p2ptls-") {
			names = append(names, de.Name())
		}
	}
	sort.Strings(names)
	return names
}

// failedChecks are the lines of systemd-analyze security that count
// against a unit.
func failedChecks(out []byte) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "✗") || strings.Contains(l, "Overall exposure") {
			lines = append(lines, strings.TrimRight(l, " "))
		}
	}
	return strings.Join(lines, "\n")
}

// unitFreeAddr is a 127.0.0.1 address whose port was free a moment ago.
func unitFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// bootInstall is the README's install, run inside the booted container:
// the units from /mnt/p2ptls-units, the binary from /mnt/p2ptls-bin.
const bootInstall = `set -e
install -m 0755 /mnt/p2ptls-bin/p2ptls /usr/local/bin/p2ptls
install -D -m 0644 /mnt/p2ptls-units/p2ptls.sysusers /etc/sysusers.d/p2ptls.conf
systemd-sysusers
install -D -m 0644 /mnt/p2ptls-units/p2ptls.tmpfiles /etc/tmpfiles.d/p2ptls.conf
systemd-tmpfiles --create p2ptls.conf
install -m 0644 /mnt/p2ptls-units/p2ptls*.service /mnt/p2ptls-units/p2ptls*.timer /etc/systemd/system/
install -D -m 0644 /mnt/p2ptls-units/env.example /etc/p2ptls/env
echo MANAGEMENT_LISTEN=127.0.0.1:8443 >> /etc/p2ptls/env
systemctl daemon-reload
systemctl enable --now p2ptls.service p2ptls-renew.timer p2ptls-backup.timer
`

// testSystemdBoot boots systemd as PID 1 in a podman container whose root
// is an overlay of this machine's (so the same systemd, nothing written
// here), installs the units as the README says and runs them for real:
// the sandbox, the capability, the shared user and state, backup and
// renew, a restore under a running serve, and the stop.
func testSystemdBoot(t *testing.T, binary string) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("booting systemd in a container needs root")
		}
		t.Skip("booting systemd in a container needs root")
	}
	podman := toolOrSkip(t, "podman")
	runc := toolOrSkip(t, "runc")
	for _, p := range []string{"/lib/systemd/systemd", "/usr/sbin/runuser"} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing: %v", p, err)
			}
			t.Skipf("%s is missing", p)
		}
	}
	units, err := filepath.Abs("systemd")
	if err != nil {
		t.Fatal(err)
	}
	// The two settings this machine's podman needs (shared/notes/containers.md).
	conf := filepath.Join(t.TempDir(), "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("p2ptls-units-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	pod := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, podman, append([]string{"--runtime", runc, "--cgroup-manager=cgroupfs"}, args...)...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	// sh runs a script in the container and fails the test when it fails.
	sh := func(t *testing.T, script string) string {
		t.Helper()
		out, err := pod(2*time.Minute, "exec", name, "/bin/sh", "-c", script)
		if err != nil {
			t.Fatalf("in the container: %s: %v\n%s", script, err, out)
		}
		return out
	}
	// The container's /tmp, /run and journal are its own: copying the
	// host's up would copy this machine's test files.
	args := []string{"run", "-d", "--name", name, "--privileged", "--network", "none", "--systemd=always"}
	for _, dir := range []string{"/tmp", "/run", "/run/lock", "/var/log/journal"} {
		args = append(args, "--mount", "type=tmpfs,destination="+dir+",notmpcopyup")
	}
	args = append(args, "-v", filepath.Dir(binary)+":/mnt/p2ptls-bin:ro", "-v", units+":/mnt/p2ptls-units:ro",
		"--rootfs", "/:O", "/lib/systemd/systemd", "--unit=basic.target")
	if out, err := pod(2*time.Minute, args...); err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := pod(2*time.Minute, "rm", "-f", name); err != nil {
			t.Errorf("podman rm: %v\n%s", err, out)
		}
	})
	waitFor := func(t *testing.T, what, script string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, _ := pod(30*time.Second, "exec", name, "/bin/sh", "-c", script)
			if ok(out) {
				return out
			}
			if time.Now().After(deadline) {
				logs, _ := pod(30*time.Second, "exec", name, "journalctl", "--no-pager", "-n", "60")
				t.Fatalf("%s: still %q after 60 s; journal:\n%s", what, out, logs)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	waitFor(t, "systemd boots", "systemctl is-system-running", func(s string) bool { return s == "running" || s == "degraded" })
	sh(t, bootInstall)

	as := "runuser -u " + unitUser + " -- env CONFIG_DIR=" + unitState + " " + unitBinary + " "
	waitFor(t, "p2ptls.service is active", "systemctl is-active p2ptls.service", func(s string) bool { return s == "active" })
	if user := sh(t, "stat -c %U /proc/$(systemctl show -p MainPID --value p2ptls.service)"); user != unitUser {
		t.Errorf("serve runs as %q, want %s", user, unitUser)
	}
	// Ports 443 and 80 as p2ptls: the ambient capability works.
	sh(t, as+"listener add web --addr 127.0.0.1:443 --http-addr 127.0.0.1:80 && "+as+"mapping add --listener web --host app.example.com --self-signed")
	waitFor(t, "serve binds 443 and 80", "journalctl -u p2ptls --no-pager -q", func(s string) bool {
		return strings.Contains(s, `msg="public listener started" listener=web addr=127.0.0.1:443 http_addr=127.0.0.1:80`)
	})
	sh(t, "MANAGEMENT_PUBLIC_URL=https://127.0.0.1:8443 MANAGEMENT_CA_FILE="+unitState+"/certs/management/ca.crt "+unitBinary+" agent check")

	// The oneshots, started as their timers would.
	sh(t, "systemctl start p2ptls-backup.service && systemctl start p2ptls-renew.service")
	archive := sh(t, "ls /var/backups/p2ptls/")
	if !regexp.MustCompile(`^p2ptls-\d{8}T\d{6}Z\.tar\.gz$`).MatchString(archive) {
		t.Fatalf("/var/backups/p2ptls holds %q, want one dated archive", archive)
	}
	for _, timer := range unitTimers {
		if got := sh(t, "systemctl is-enabled "+timer+"; systemctl is-active "+timer); got != "enabled\nactive" {
			t.Errorf("%s: %q, want enabled and active", timer, got)
		}
	}

	// A restore by the p2ptls user while serve runs; serve must keep
	// writing to the state afterwards (its run status, later changes).
	sh(t, as+"mapping add --listener web --host b.example.com --self-signed")
	sh(t, as+"restore /var/backups/p2ptls/"+archive+" --force")
	sh(t, as+"mapping add --listener web --host c.example.com --self-signed")
	waitFor(t, "serve loads the change after the restore", "journalctl -u p2ptls --no-pager -q | tail -n 1", func(s string) bool {
		return strings.Contains(s, "mappings=2")
	})
	if errs := sh(t, "journalctl -u p2ptls --no-pager -q | grep -E 'level=(ERROR|WARN)' || true"); errs != "" {
		t.Errorf("serve logged errors:\n%s", errs)
	}

	// The README's way to run a command as the service does: its user and
	// environment file; the exit code comes back.
	run := "systemd-run --quiet --wait --pipe --collect -p User=" + unitUser +
		" -p EnvironmentFile=-/etc/p2ptls/env -p Environment=CONFIG_DIR=" + unitState + " " + unitBinary + " "
	if got := sh(t, run+"mapping list --output json"); !strings.Contains(got, `"app-example-com"`) || !strings.Contains(got, `"c-example-com"`) {
		t.Errorf("mapping list through systemd-run: %s", got)
	}
	if got := sh(t, run+"mapping show nope; echo exit=$?"); !strings.HasSuffix(got, "exit=1") {
		t.Errorf("a failing command through systemd-run: %q, want exit=1", got)
	}
	// doctor reads MANAGEMENT_PUBLIC_URL, set only in /etc/p2ptls/env.
	if got := sh(t, run+"doctor --output json || true"); !strings.Contains(got, "https://mgmt.example.com:8443") {
		t.Errorf("doctor through systemd-run does not see MANAGEMENT_PUBLIC_URL from /etc/p2ptls/env: %s", got)
	}

	// A stray SIGHUP ends serve (Go's default); systemd starts it again.
	pid := sh(t, "systemctl show -p MainPID --value p2ptls.service")
	sh(t, "systemctl kill -s SIGHUP p2ptls.service")
	waitFor(t, "serve restarts after SIGHUP", "systemctl show -p MainPID --value p2ptls.service; systemctl is-active p2ptls.service", func(s string) bool {
		p, state, _ := strings.Cut(s, "\n")
		return p != pid && p != "0" && state == "active"
	})

	sh(t, "systemctl stop p2ptls.service")
	if got := sh(t, "systemctl show -p Result -p ExecMainStatus p2ptls.service"); got != "Result=success\nExecMainStatus=0" {
		t.Errorf("after systemctl stop: %q, want success and exit 0", got)
	}
	if failed := sh(t, "systemctl list-units --failed --plain --no-legend 'p2ptls*'"); failed != "" {
		t.Errorf("failed units: %s", failed)
	}
}
