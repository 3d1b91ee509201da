// Package mappings owns the certificate mappings of the public HTTPS
// listeners: which hosts a listener serves with which certificate, and the
// certificate files of each mapping. The command line and the management API
// only parse and print; every rule lives here, under the state lock.
//
// A mapping's desired state is its record, mappings/<id>.toml (state's
// RecordName); what it serves lives
// beside it (every name below is a constant or function of this package):
//
//	certs/public/                    PublicDir, 0700
//	└── <mapping-id>/                MappingDir(id), 0700
//	    ├── cert.pem                 CertFileName: the chain, leaf first (0644)
//	    ├── key.pem                  KeyFileName: its private key (0600)
//	    └── meta.toml                MetaFileName: source, issuance and renewal status (0600)
//
// Sources "manual" (uploaded, copied here) and "self-signed" (generated here)
// have all three files from the moment the mapping exists; "acme" gets them
// when a certificate is issued; "file" has none, its certificate and key are
// read from the paths in the mapping.
//
// A mapping's entry and its files change together, as one change of the
// store (state.Update): adding, removing or regenerating a mapping writes
// its files and its record in one Store.Apply.
package mappings
