//go:build !linux

package pool

import "time"

// bell is a parked collector's doorbell (wake_linux.go); worker processes
// need Linux, so elsewhere a link cannot be made.
type bell struct{}

func newBell() (*bell, error)         { return nil, errUnsupported }
func (*bell) wait(time.Duration) bool { return false }
func (*bell) ring()                   {}
func (*bell) close() error            { return nil }
