//go:build !linux

package cpus_test

import (
	"fmt"
	"os"
)

// runChild: no test re-executes this binary outside Linux.
func runChild(mode string) int {
	fmt.Fprintf(os.Stderr, "child mode %q is Linux-only\n", mode)
	return 2
}
