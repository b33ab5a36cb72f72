//go:build !linux

package cluster

import (
	"os"
	"os/exec"
)

// drainSignals: nodes run on Linux only (their pool does); elsewhere an
// interrupt is the only portable signal.
var drainSignals = []os.Signal{os.Interrupt}

// dieWithParent: no portable parent-death signal; nodes run on Linux only.
func dieWithParent(*exec.Cmd) {}
