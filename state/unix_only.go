// p2ptls runs on Unix systems only (Linux, macOS, the BSDs): its state
// lock is flock(2), its secrets are kept private by 0600 file modes, and it
// opens files the user names with O_NONBLOCK and O_NOFOLLOW. On anything
// else the build stops here, at this import, with its path as the message.

//go:build !unix

package state

import _ "p2ptls_needs_a_unix_system/flock_and_file_modes"
