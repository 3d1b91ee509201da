// Package testkit holds test harnesses only: code that tests import, never
// production code. Its packages live in one tree rather than under internal/
// because tests outside state/ (cmd/p2ptls, serve/) import them, which Go's
// internal/ rule would forbid; TestOnlyTestsImportTestkit enforces the rule
// instead.
//
//   - acmetest: a real ACME environment on 127.0.0.1 (pebble,
//     pebble-challtestsrv, a DNS front, a Cloudflare emulator).
//   - cftest: an in-memory emulator of the Cloudflare API v4.
//   - etcdtest: real etcd servers in the test process (one node or a
//     cluster) for the etcd store.
//   - statetest: proof that a refused command or request left a state
//     directory exactly as it was, and the hostile files tests feed it.
package testkit
