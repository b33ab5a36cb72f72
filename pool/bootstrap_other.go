//go:build !linux

package pool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

var errUnsupported = fmt.Errorf("pool: worker processes need Linux: %w", errors.ErrUnsupported)

type ctlConn struct{}

func (*ctlConn) send([]byte, *os.File) error { return errUnsupported }
func (*ctlConn) close() error                { return nil }

func startChild(setup, int, *shmLink) (*child, error) { return nil, errUnsupported }

func (*child) sendRelease(uint64) error { return errUnsupported }

func workerMain(string) int {
	fmt.Fprintln(os.Stderr, "mproc worker:", errUnsupported)
	return exitProtocol
}

func exitSignal(*exec.ExitError) os.Signal { return nil }
