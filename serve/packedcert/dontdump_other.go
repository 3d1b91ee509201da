//go:build unix && !linux

package packedcert

func dontDump([]byte) {}
