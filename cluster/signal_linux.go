package cluster

import (
	"os"
	"os/exec"
	"syscall"
)

// drainSignals make a node drain and exit; the first is what Close sends
// to the nodes Connect started.
var drainSignals = []os.Signal{syscall.SIGTERM, os.Interrupt}

// dieWithParent makes the kernel kill cmd's process when this one dies.
// Pdeathsig follows the thread that forks; Go keeps that thread alive
// unless a goroutine locked to it exits, and no caller here locks one.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
