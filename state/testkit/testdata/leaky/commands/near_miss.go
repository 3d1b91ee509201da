package commands

// A package whose path only starts like the kit's is not the kit.
import _ "example.test/leaky/state/testkitten"
