package commands

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/pkg/twwidth"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/p2pstream/p2ptls/state/mappings"
)

func init() {
	// tablewriter's string-width cache is a map of 8192 pointer slots made
	// at init: 1 MiB that every GC cycle of a long-running serve scans,
	// about as much as the rest of its heap with a few mappings. p2ptls
	// prints each table once, so the cache saves nothing.
	twwidth.SetCacheCapacity(0)
}

// Output formats of --output.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// printJSON writes v as the one JSON document of the command's stdout.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONList writes the elements each yields as one JSON array, byte
// for byte what printJSON writes for the slice of them ("[]" when there
// are none), one element at a time: the list of 100k mappings is never
// held whole, as values or as JSON. An error ends the output where it is.
func printJSONList[T any](w io.Writer, each func(yield func(T) error) error) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	var buf []byte
	err := each(func(v T) error {
		// Inside the array every line of an element is indented once more,
		// as Encoder.SetIndent("", "  ") lays out the whole slice.
		var b []byte
		var err error
		if info, ok := any(v).(mappings.Info); ok {
			b, err = appendInfoJSON(buf[:0], &info)
			buf = b
		} else {
			b, err = json.MarshalIndent(v, "  ", "  ")
		}
		if err != nil {
			return err
		}
		sep := ",\n  "
		if n == 0 {
			sep = "[\n  "
		}
		n++
		if _, err := bw.WriteString(sep); err != nil {
			return err
		}
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		_ = bw.Flush()
		return err
	}
	end := "\n]\n"
	if n == 0 {
		end = "[]\n"
	}
	if _, err := bw.WriteString(end); err != nil {
		return err
	}
	return bw.Flush()
}

// printTable writes a borderless table for people; its layout may change.
func printTable(w io.Writer, header []string, rows [][]string) error {
	t := tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders: tw.BorderNone,
			Symbols: tw.NewSymbols(tw.StyleNone),
			Settings: tw.Settings{
				Separators: tw.Separators{BetweenColumns: tw.Off, BetweenRows: tw.Off},
				Lines:      tw.Lines{ShowHeaderLine: tw.Off},
			},
		})),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
	)
	t.Header(header)
	if err := t.Bulk(rows); err != nil {
		return fmt.Errorf("render table: %w", err)
	}
	return t.Render()
}

// printFields writes "key: value" lines for one object, for people.
func printFields(w io.Writer, fields [][2]string) error {
	rows := make([][]string, len(fields))
	for i, f := range fields {
		rows[i] = []string{f[0] + ":", f[1]}
	}
	t := tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders:  tw.BorderNone,
			Symbols:  tw.NewSymbols(tw.StyleNone),
			Settings: tw.Settings{Separators: tw.Separators{BetweenColumns: tw.Off, BetweenRows: tw.Off}},
		})),
		tablewriter.WithRowAlignment(tw.AlignLeft),
	)
	if err := t.Bulk(rows); err != nil {
		return fmt.Errorf("render fields: %w", err)
	}
	return t.Render()
}

// orDash shows an empty value as "-" in tables.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
