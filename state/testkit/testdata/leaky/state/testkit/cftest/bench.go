package cftest

// Not even a harness imports the benchmark program.
import _ "example.test/leaky/serve/internal/hsbench"
