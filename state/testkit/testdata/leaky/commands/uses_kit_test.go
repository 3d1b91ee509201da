package commands

import _ "example.test/leaky/state/testkit/statetest"
