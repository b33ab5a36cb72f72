package cluster

import (
	"os"
	"syscall"
)

// drainSignals make a node drain and exit; the first is what Close sends
// to the nodes Connect started.
var drainSignals = []os.Signal{syscall.SIGTERM, os.Interrupt}
