// hull-agent is PID 1 of a hull sandbox VM.
package main

import (
	"fmt"
	"os"

	"github.com/hull-runtime/hull/guest"
)

func main() {
	if err := guest.Main(); err != nil {
		fmt.Fprintf(os.Stderr, "hull-agent: %v\n", err)
	}
	guest.PowerOff()
}
