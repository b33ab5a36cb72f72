//go:build !linux

package cluster

import "os"

// drainSignals: nodes run on Linux only (their pool does); elsewhere an
// interrupt is the only portable signal.
var drainSignals = []os.Signal{os.Interrupt}
