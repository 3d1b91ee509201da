package serve

import _ "example.test/leaky/serve/internal/hsbench"
