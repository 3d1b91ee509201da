package commands

import (
	"os"
	"runtime/debug"
)

// A command other than serve runs for a fraction of a second and keeps
// nearly everything it loads until it exits (100k mappings decoded for a
// change of one), so the collector's work at the default GOGC=100 is wasted:
// 25-40 ms of a 0.2 s `mapping add` at 100k mappings. It collects at five
// times the live heap instead, never letting the heap pass cliMemoryLimit
// when it can help it. serve, long-lived, keeps the runtime's defaults.
const (
	cliGCPercent   = 400
	cliMemoryLimit = 1 << 30
)

// gcPolicy is what a command sets: ok is false when the runtime's settings
// stay (serve, or an operator's own GOGC or GOMEMLIMIT, which win).
func gcPolicy(command string, getenv func(string) string) (percent int, limit int64, ok bool) {
	if command == "serve" || getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return 0, 0, false
	}
	return cliGCPercent, cliMemoryLimit, true
}

// applyGCPolicy sets the collector for command (see gcPolicy).
func applyGCPolicy(command string) {
	if percent, limit, ok := gcPolicy(command, os.Getenv); ok {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}
