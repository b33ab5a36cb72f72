//go:build !amd64

package ipc

// cpuRelax is a no-op where no PAUSE equivalent is wired up.
func cpuRelax() {}
