package mappings

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/parallel"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// Limits of one import. The whole input is held in memory until it is
// checked, so it is bounded; a line holds one mapping, and a manual
// mapping's certificate chain and key (each at most userfile.MaxPEM) fit.
const (
	MaxImportBytes = 256 << 20
	MaxImportLine  = 2 << 20
)

// importBlock is the size of the blocks the lines of an import are read
// into before they are decoded.
const importBlock = 1 << 20

const hintImportSize = "split the import into smaller files, one JSON object per line"

// lineReader yields the records of an import with their line numbers: one
// JSON object per line, blank lines skipped, within the limits.
type lineReader struct {
	name    string
	src     *io.LimitedReader
	sc      *bufio.Scanner
	line    int
	maxLine int
	total   int64
}

func newLineReader(r io.Reader, name string, maxTotal int64, maxLine int) *lineReader {
	// One byte over the limit tells "too large" from "exactly the limit".
	src := &io.LimitedReader{R: r, N: maxTotal + 1}
	sc := bufio.NewScanner(src)
	// The scanner needs room for the line and its "\r\n".
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine+2)), maxLine+2)
	return &lineReader{name: name, src: src, sc: sc, maxLine: maxLine, total: maxTotal}
}

// next returns the next record and its line number; io.EOF after the last.
func (lr *lineReader) next() (Record, int, error) {
	b, line, err := lr.nextLine()
	if err != nil {
		return Record{}, line, err
	}
	r, err := decodeRecord(b)
	return r, line, err
}

// nextLine returns the next line that is not blank, undecoded (valid until
// the next call), and its number; io.EOF after the last.
func (lr *lineReader) nextLine() ([]byte, int, error) {
	for lr.sc.Scan() {
		lr.line++
		if lr.src.N == 0 {
			return nil, lr.line, fault.Invalidf(hintImportSize, "cannot read %s: it is larger than the %s limit of an import", lr.name, userfile.Size(lr.total))
		}
		b := lr.sc.Bytes()
		if len(b) > lr.maxLine {
			return nil, lr.line, lr.tooLong()
		}
		if len(bytes.Trim(b, " \t\r")) == 0 {
			continue
		}
		return b, lr.line, nil
	}
	err := lr.sc.Err()
	switch {
	case errors.Is(err, bufio.ErrTooLong):
		return nil, lr.line + 1, lr.tooLong()
	case err != nil:
		return nil, lr.line + 1, fmt.Errorf("read %s: %w", lr.name, err)
	case lr.src.N == 0:
		return nil, lr.line, fault.Invalidf(hintImportSize, "cannot read %s: it is larger than the %s limit of an import", lr.name, userfile.Size(lr.total))
	}
	return nil, lr.line, io.EOF
}

func (lr *lineReader) tooLong() error {
	return fault.Invalidf("write one mapping per line; a line holds at most one certificate chain and key",
		"the line is longer than the %s limit", userfile.Size(int64(lr.maxLine)))
}

// atLine puts the line number in front of err, keeping its kind and hint.
func atLine(line int, err error) error { return fmt.Errorf("line %d: %w", line, err) }

// ParseRecords reads an import (see Import) without checking the mappings
// against anything: the records and the line number of each.
func ParseRecords(r io.Reader, name string) ([]Record, []int, error) {
	return parseRecords(r, name, MaxImportBytes, MaxImportLine)
}

func parseRecords(r io.Reader, name string, maxTotal int64, maxLine int) ([]Record, []int, error) {
	lr := newLineReader(r, name, maxTotal, maxLine)
	var recs []Record
	var lines []int
	for {
		rec, line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return recs, lines, nil
		}
		if err != nil {
			return nil, nil, atLine(line, err)
		}
		recs = append(recs, rec)
		lines = append(lines, line)
	}
}

// Imported is one mapping added by Import.
type Imported struct {
	Mapping state.Mapping
	Line    int
}

// Import adds every mapping of r, one Record as JSON per line ("mapping
// export" writes them), under one lock and one write of p2ptls.toml: all of
// them or none. Each is checked as Add checks one, against the state and
// the lines before it; the first one refused is named by its line ("line
// 17: …"), and then nothing is written. An id or a host (on the same
// listener) given twice in r is bad input; one the state holds already is
// refused as Add refuses it. Blank lines are skipped; anything else that is
// not a JSON object, a field Record does not have, a line longer than
// MaxImportLine and an input larger than MaxImportBytes are refused. name
// is how messages call r. The warnings are Add's, each naming its mapping.
func Import(ctx context.Context, s state.Store, r io.Reader, name string, now time.Time) ([]Imported, []string, error) {
	return importRecords(ctx, s, newLineReader(r, name, MaxImportBytes, MaxImportLine), now, nil)
}

// importRecords is Import; src, when not nil, checks the profiles (see
// ImportChecked).
func importRecords(ctx context.Context, s state.Store, lr *lineReader, now time.Time, src ProfileSource) ([]Imported, []string, error) {
	// Every line is read first (reading is quick), then decoded and
	// prepared, one worker per core: the slow part (decoding JSON,
	// reading files, generating keys, signing) happens before the lock is
	// taken. The lines are held in blocks of importBlock, not one
	// allocation each; a line is dropped once decoded, and a block goes
	// with its last line.
	var raw [][]byte
	var lines []int
	var readErr error
	readLine := 0
	var block []byte
	for {
		b, line, err := lr.nextLine()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			readErr, readLine = err, line
			break
		}
		if cap(block)-len(block) < len(b) {
			block = make([]byte, 0, max(len(b), importBlock))
		}
		block = append(block, b...)
		raw, lines = append(raw, block[len(block)-len(b):len(block):len(block)]), append(lines, line)
	}
	batch := make([]prepared, len(raw))
	errs := make([]error, len(raw))
	parallel.Each(len(raw), func(i int) bool {
		if errs[i] = ctx.Err(); errs[i] != nil {
			return false
		}
		rec, err := decodeRecord(raw[i])
		raw[i] = nil
		var in Input
		if errs[i] = err; errs[i] == nil {
			if in, errs[i] = rec.Input(); errs[i] == nil {
				batch[i], errs[i] = prepare(in, now)
			}
		}
		return errs[i] == nil
	})
	// The first line refused is named, as if they were checked one by one:
	// every record before the first that failed has been prepared.
	for i, err := range errs {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, err
		}
		if err != nil {
			return nil, nil, atLine(lines[i], err)
		}
	}
	if readErr != nil {
		return nil, nil, atLine(readLine, readErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if len(batch) == 0 {
		return nil, nil, nil // nothing to add: the state is not even locked
	}
	// Before the lock: the offer may come over the network.
	profileWarnings, err := checkBatchProfiles(ctx, batch, lines, src)
	if err != nil {
		return nil, nil, err
	}
	err = commit(ctx, s, fmt.Sprintf("mapping import (%d mappings)", len(batch)), batch, now)
	var ie *itemError
	if errors.As(err, &ie) {
		if ie.Other >= 0 {
			return nil, nil, atLine(lines[ie.Index], fmt.Errorf("%w (first on line %d)", ie.Err, lines[ie.Other]))
		}
		return nil, nil, atLine(lines[ie.Index], ie.Err)
	}
	if err != nil {
		return nil, nil, err
	}
	added := make([]Imported, len(batch))
	warnings := profileWarnings
	for i, p := range batch {
		added[i] = Imported{Mapping: p.m, Line: lines[i]}
		for _, w := range p.warnings {
			warnings = append(warnings, fmt.Sprintf("line %d (mapping %s): %s", lines[i], p.m.ID, w))
		}
	}
	return added, warnings, nil
}
