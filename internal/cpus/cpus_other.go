//go:build !linux

package cpus

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
)

var errUnsupported = fmt.Errorf("cpus on %s: %w (affinity and cgroups are Linux-only)", runtime.GOOS, errors.ErrUnsupported)

// Allowed returns errors.ErrUnsupported outside Linux.
func Allowed() ([]int, error) { return nil, errUnsupported }

// Quota returns errors.ErrUnsupported outside Linux.
func Quota() (float64, error) { return 0, errUnsupported }

// ReadTopology returns errors.ErrUnsupported outside Linux.
func ReadTopology() (Topology, error) { return Topology{}, errUnsupported }

// Layout returns errors.ErrUnsupported outside Linux; [Topology.Layout] works everywhere.
func Layout(n int, explicit []int) ([]Placement, error) { return nil, errUnsupported }

// StartPinned returns errors.ErrUnsupported outside Linux, except that cpu < 0
// means a plain cmd.Start.
func StartPinned(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	return errUnsupported
}

// ThreadMasks returns errors.ErrUnsupported outside Linux.
func ThreadMasks(pid int) (map[int][]int, error) { return nil, errUnsupported }
