// Command clibench times the p2ptls command line over generated states of
// many mappings: wall time and peak memory (the child's maxrss) of each
// command, the median of a few runs, as a table.
//
//	go run ./state/internal/clibench [-mappings 10000,100000] [-runs 3] [-acme 10] [-ari]
//	    [-dir DIR] [-only 'doctor,cert renew'] [-timeout 2m] [-bin OLD-P2PTLS]
//
// It builds the real binary (go build ./cmd/p2ptls), writes each state
// straight to disk (records, certificates, metadata; no lock, no fsync: it
// is generated, not saved) and runs the binary against it with stdin an
// empty pipe and stdout /dev/null, as cron does (cert renew takes
// /dev/null on stdin for a terminal, and a pipe for cron: its random sleep
// is on). Every certificate is a real self-signed
// ECDSA P-256 one for its mapping's host, so that list, doctor and renew
// see what they would in a real state; a percentage of the mappings
// (-acme) are source acme with such a certificate, fresh, so that nothing
// is due. No ACME account is registered: renew decides by the lifetime
// rule without asking a server, and nothing goes over the network. With
// -ari each ACME mapping's meta.toml also records a fresh renewal info
// answer about its certificate (a window a month before it expires, to be
// asked again a day after the state was generated), as a state whose
// account asked has: a renewal pass then decides from the window, and
// would ask no server for a day.
//
// Linux only (peak memory is rusage maxrss, in KiB on Linux).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// maxMappings bounds a generated state: 1M mappings are 3M files.
const maxMappings = 1_000_000

// commandTimeout bounds one run of one command (-timeout); one that takes
// longer is reported as such instead of holding the benchmark.
var commandTimeout = 2 * time.Minute

// importRecords is the size of the "mapping import" measured.
const importRecords = 10_000

// importRuns counts the import's runs, each in its own directory.
var importRuns int

// withARI is -ari.
var withARI bool

// ariRecheck is when a generated renewal info answer is to be asked
// again, after the state was generated: a day, the longest a renewal
// waits (acme's ariRecheckMax).
const ariRecheck = 24 * time.Hour

func main() {
	sizes := flag.String("mappings", "10000,100000", "comma-separated state sizes")
	runs := flag.Int("runs", 3, "runs of each command (the median is shown)")
	acmePct := flag.Int("acme", 10, "percentage of the mappings that are source acme")
	keep := flag.String("dir", "", "generate the states here and keep them (default: a temporary directory, removed)")
	only := flag.String("only", "", "comma-separated command names to run (default: all)")
	prebuilt := flag.String("bin", "", "time this p2ptls binary instead of building ./cmd/p2ptls (e.g. an older one, to compare)")
	flag.DurationVar(&commandTimeout, "timeout", commandTimeout, "longest run of one command (at most 30m)")
	flag.BoolVar(&withARI, "ari", false, "record a fresh renewal info answer in each ACME mapping's meta.toml (applies when a state is generated, not to one kept in -dir)")
	flag.Parse()
	if err := run(*sizes, *runs, *acmePct, *keep, *only, *prebuilt); err != nil {
		fmt.Fprintln(os.Stderr, "clibench:", err)
		os.Exit(1)
	}
}

// bench is one command measured: its arguments, and what to run before
// each run (outside the measurement) or after it.
type bench struct {
	name  string
	args  []string
	codes []int // exit codes that are results, not failures
	setup func(dir string) (stateDir string, args []string, err error)
	after func(stateDir string) error
}

func run(sizesFlag string, runs, acmePct int, keep, only, prebuilt string) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("clibench runs on Linux only (peak memory is rusage maxrss)")
	}
	if runs < 1 || runs > 20 {
		return fmt.Errorf("-runs %d: give 1 to 20", runs)
	}
	if commandTimeout <= 0 || commandTimeout > 30*time.Minute {
		return fmt.Errorf("-timeout %s: give up to 30m", commandTimeout)
	}
	if acmePct < 0 || acmePct > 100 {
		return fmt.Errorf("-acme %d: give a percentage", acmePct)
	}
	var sizes []int
	for _, f := range strings.Split(sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxMappings {
			return fmt.Errorf("-mappings: %q is not a size from 1 to %d", f, maxMappings)
		}
		sizes = append(sizes, n)
	}
	work := keep
	if work == "" {
		d, err := os.MkdirTemp("", "clibench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	bin := filepath.Join(work, "p2ptls")
	if prebuilt != "" {
		abs, err := filepath.Abs(prebuilt)
		if err != nil {
			return err
		}
		bin = abs
	} else {
		build := exec.Command("go", "build", "-o", bin, "./cmd/p2ptls")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build p2ptls (run clibench from the module's root): %w", err)
		}
	}
	benches := []bench{
		{name: "mapping add", args: []string{"mapping", "add", "--listener", "web", "--host", "bench-add.example.net", "--id", "bench-add", "--self-signed"},
			after: func(dir string) error { return runQuiet(bin, dir, "mapping", "remove", "bench-add") }},
		{name: "mapping remove", args: []string{"mapping", "remove", "bench-rm"},
			setup: func(dir string) (string, []string, error) {
				return dir, nil, runQuiet(bin, dir, "mapping", "add", "--listener", "web", "--host", "bench-rm.example.net", "--id", "bench-rm", "--self-signed")
			}},
		{name: "mapping list --output json", args: []string{"mapping", "list", "--output", "json"}},
		{name: "cert list --output json", args: []string{"cert", "list", "--output", "json"}},
		// Every certificate read and parsed again: the first list after
		// an upgrade, or with run/cache removed.
		{name: "mapping list --output json (no certs memo)", args: []string{"mapping", "list", "--output", "json"},
			setup: func(dir string) (string, []string, error) {
				return dir, nil, removeMemo(dir, "certs")
			}},
		{name: "doctor", args: []string{"doctor"}, codes: []int{0, 1}}, // 1: a check failed (no ACME account)
		{name: "listener list", args: []string{"listener", "list"}},
		{name: "cert renew (nothing due)", args: []string{"cert", "renew"}},
		{name: "cert renew --dry-run", args: []string{"cert", "renew", "--dry-run"}},
		{name: fmt.Sprintf("mapping import (%dk, empty state)", importRecords/1000),
			setup: func(dir string) (string, []string, error) { return importSetup(bin, filepath.Dir(dir)) }},
	}
	if only != "" {
		want := strings.Split(only, ",")
		benches = slices.DeleteFunc(benches, func(b bench) bool {
			return !slices.ContainsFunc(want, func(w string) bool { return strings.HasPrefix(b.name, strings.TrimSpace(w)) })
		})
	}
	type cell struct {
		wall, cpu time.Duration // cpu: user + system, steadier than wall on a shared machine
		rss       int64         // KiB
		err       error
	}
	results := map[string]map[int]cell{}
	for _, n := range sizes {
		dir := filepath.Join(work, fmt.Sprintf("state-%d", n))
		start := time.Now()
		if err := generate(dir, n, acmePct); err != nil {
			return fmt.Errorf("generate %d mappings: %w", n, err)
		}
		fmt.Fprintf(os.Stderr, "generated %d mappings in %s\n", n, time.Since(start).Round(time.Millisecond))
		for _, b := range benches {
			var walls, cpus []time.Duration
			var rsss []int64
			var failed error
			for range runs {
				sdir, args := dir, b.args
				if b.setup != nil {
					d, a, err := b.setup(dir)
					if err != nil {
						failed = err
						break
					}
					sdir = d
					if a != nil {
						args = a
					}
				}
				wall, cpu, rss, err := timeRun(bin, sdir, args, b.codes)
				if err != nil {
					failed = err
					break
				}
				if b.after != nil {
					if err := b.after(sdir); err != nil {
						failed = err
						break
					}
				}
				walls, cpus, rsss = append(walls, wall), append(cpus, cpu), append(rsss, rss)
			}
			c := cell{err: failed}
			if len(walls) > 0 { // a later run that failed leaves the ones before it
				c.err = nil
				slices.Sort(walls)
				slices.Sort(cpus)
				slices.Sort(rsss)
				c.wall, c.cpu, c.rss = walls[len(walls)/2], cpus[len(cpus)/2], rsss[len(rsss)/2]
			}
			if results[b.name] == nil {
				results[b.name] = map[int]cell{}
			}
			results[b.name][n] = c
			fmt.Fprintf(os.Stderr, "%d %s: %s (cpu %s) %d MiB %v\n", n, b.name, c.wall.Round(time.Millisecond), c.cpu.Round(time.Millisecond), c.rss/1024, c.err)
		}
		if keep == "" {
			_ = os.RemoveAll(dir)
		}
	}
	old, _ := filepath.Glob(filepath.Join(work, "import-state-*"))
	for _, d := range old {
		_ = os.RemoveAll(d)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
	head := []string{"COMMAND"}
	for _, n := range sizes {
		head = append(head, fmt.Sprintf("%dk TIME", n/1000), fmt.Sprintf("%dk CPU", n/1000), fmt.Sprintf("%dk PEAK RSS", n/1000))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, b := range benches {
		row := []string{b.name}
		for _, n := range sizes {
			c := results[b.name][n]
			if c.err != nil {
				row = append(row, "error", "-", "-")
				fmt.Fprintf(os.Stderr, "%s at %d: %v\n", b.name, n, c.err)
				continue
			}
			row = append(row, c.wall.Round(time.Millisecond).String(), c.cpu.Round(time.Millisecond).String(), fmt.Sprintf("%d MiB", c.rss/1024))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	fmt.Fprintf(tw, "(median of %d runs; %d%% of the mappings acme, the rest self-signed; %d cores)\n", runs, acmePct, runtime.NumCPU())
	return tw.Flush()
}

// timeRun runs the binary once against dir and returns its wall time, CPU
// time (user + system) and peak resident memory.
func timeRun(bin, dir string, args []string, codes []int) (wall, cpu time.Duration, rss int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = benchEnv(dir)
	var stderr bytes.Buffer
	cmd.Stdin = strings.NewReader("") // a pipe, as from cron
	cmd.Stderr = &stderr              // stdout: nil is /dev/null
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if ctx.Err() != nil {
		return 0, 0, 0, fmt.Errorf("%s: longer than %s", strings.Join(args, " "), commandTimeout)
	}
	if code := cmd.ProcessState.ExitCode(); err != nil && !slices.Contains(codes, code) {
		return 0, 0, 0, fmt.Errorf("%s: exit %d: %v: %s", strings.Join(args, " "), code, err, lastLines(stderr.String()))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), rss, nil
}

// removeMemo removes the state's memo of kind (state.OpenMemo).
func removeMemo(dir, kind string) error {
	err := os.Remove(filepath.Join(dir, filepath.FromSlash(state.MemoDir), kind))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

func runQuiet(bin, dir string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = benchEnv(dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, lastLines(string(out)))
	}
	return nil
}

func benchEnv(dir string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "CONFIG_DIR=" + dir, "MANAGEMENT_TLS_MODE=off", "MANAGEMENT_ALLOW_INSECURE_HTTP=true"}
}

func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}

// importSetup makes an empty state with the listener and a file of
// importRecords self-signed records for it.
func importSetup(bin, work string) (string, []string, error) {
	// A fresh directory each run, all removed at the end: creating 50k
	// files right after deleting as many costs several times more on ext4
	// without a journal (it skips recently deleted inodes), which would be
	// measured instead of the import.
	importRuns++
	dir := filepath.Join(work, fmt.Sprintf("import-state-%d", importRuns))
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, err
	}
	if err := runQuiet(bin, dir, "listener", "add", "web", "--addr", "127.0.0.1:8443"); err != nil {
		return "", nil, err
	}
	file := filepath.Join(work, "import.jsonl")
	var b bytes.Buffer
	for i := range importRecords {
		fmt.Fprintf(&b, `{"listener":"web","hosts":["i%06d.example.org"],"id":"i%06d","source":"self-signed","days":90}`+"\n", i, i)
	}
	if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
		return "", nil, err
	}
	return dir, []string{"mapping", "import", file}, nil
}

// recordHeader is the comment a save puts at the top of a record.
const recordHeader = "# p2ptls mapping. Hand edits are allowed and validated on every read;\n# the file name is the id.\n\n"

// generate writes a state of n mappings into dir: one listener, n records,
// and each mapping's certificate, key and metadata, one worker per core.
func generate(dir string, n, acmePct int) error {
	if _, err := os.Stat(filepath.Join(dir, state.ConfigFile)); err == nil {
		return nil // kept from an earlier run (-dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, state.RecordsDir), 0o700); err != nil {
		return err
	}
	top := "schema_version = 2\n\n[[listeners]]\nname = 'web'\naddr = '127.0.0.1:8443'\nfallback = 'self-signed'\n"
	now := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, runtime.NumCPU())
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += len(errs) {
				if err := writeMapping(dir, i, i%100 < acmePct, now); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	// Written last: a state cut short by an error has no p2ptls.toml, and
	// generate starts it again.
	return os.WriteFile(filepath.Join(dir, state.ConfigFile), []byte(top), 0o600)
}

func writeMapping(dir string, i int, isACME bool, now time.Time) error {
	id := fmt.Sprintf("m%06d", i)
	m := state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned, Days: 90}
	if isACME {
		m.Source, m.Days, m.Challenge, m.KeyType = state.SourceACME, 0, state.ChallengeHTTP01, "ec256"
	}
	rec, err := toml.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(state.RecordName(id))), append([]byte(recordHeader), rec...), 0o600); err != nil {
		return err
	}
	kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), now, 90*24*time.Hour)
	if err != nil {
		return err
	}
	meta := mappings.Meta{
		Source: m.Source, IssuedAt: now.UTC().Truncate(time.Second), NotAfter: kp.Cert.NotAfter.UTC(),
		FingerprintSHA256: pki.Fingerprint(kp.Cert), LastAttemptAt: now.UTC().Truncate(time.Second), NextRenewalAt: pki.RenewalTime(kp.Cert),
	}
	if isACME && withARI {
		// A window as Let's Encrypt suggests one: two days, a month before
		// the end; the time chosen in it spread over the mappings.
		end := kp.Cert.NotAfter.UTC().Add(-30 * 24 * time.Hour).Truncate(time.Second)
		start := end.Add(-48 * time.Hour)
		meta.ARI = mappings.ARI{WindowStart: start, WindowEnd: end, CheckAt: now.UTC().Add(ariRecheck).Truncate(time.Second), FingerprintSHA256: meta.FingerprintSHA256}
		meta.NextRenewalAt = start.Add(time.Duration(i%48) * time.Hour)
	}
	mb, err := toml.Marshal(meta)
	if err != nil {
		return err
	}
	md := filepath.Join(dir, filepath.FromSlash(mappings.MappingDir(id)))
	if err := os.MkdirAll(md, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{mappings.KeyFileName, kp.KeyPEM, state.SecretMode}, {mappings.CertFileName, kp.CertPEM, state.PublicMode}, {mappings.MetaFileName, mb, state.SecretMode}} {
		if err := os.WriteFile(filepath.Join(md, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}
