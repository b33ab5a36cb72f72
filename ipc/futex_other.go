//go:build !linux

package ipc

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
)

var errTimedOut = errors.New("ipc: wait timed out")

// errNoFutex is what sleeping waits fail with off Linux.
var errNoFutex = fmt.Errorf("ipc: cross-process sleep needs Linux futexes: %w", errors.ErrUnsupported)

// futexWait is unavailable off Linux; waits that would sleep fail with an
// error wrapping errors.ErrUnsupported.
func futexWait(addr *atomic.Uint32, val uint32, timeout time.Duration) error {
	return errNoFutex
}

// futexWake is a no-op off Linux.
func futexWake(addr *atomic.Uint32, n int) int { return 0 }

// futexWakes counts futexWake calls (always 0 here).
var futexWakes atomic.Uint64

// osYield yields the processor to another goroutine.
func osYield() { runtime.Gosched() }
