package acmetest

// One harness may use another.
import _ "example.test/leaky/state/testkit/cftest"
