// Package state owns the p2ptls state directory: where it is, how files in it
// are written (atomically, with fixed modes), the exclusive lock every
// mutation holds, and the desired state: p2ptls.toml and one record per
// mapping in mappings/.
//
// Layout (every name below is a constant in this package or the package that
// produces the file):
//
//	$CONFIG_DIR/                      0700
//	├── p2ptls.toml                   desired state: settings, listeners, DNS credentials (ConfigFile)
//	├── p2ptls.toml.v1.bak            the schema_version 1 file a migration replaced (BackupV1File)
//	├── mappings/<mapping-id>.toml    one record per mapping (RecordsDir, RecordName)
//	├── p2ptls.lock                   held while a process mutates state (LockFile)
//	├── certs/
//	│   ├── management/               ca.crt ca.key server.crt server.key
//	│   └── public/<mapping-id>/      certificate, key, status/renewal metadata
//	├── acme/
//	│   ├── accounts/                 ACME account keys and registrations
//	│   └── challenges/               in-flight HTTP-01 tokens, TLS-ALPN-01 certificates
//	├── secrets/                      DNS provider tokens, admin token hashes
//	└── run/                          runtime status written by serve
//
// Commands and serve never touch files directly: they go through Store, so a
// different backend can replace the local directory later.
package state
