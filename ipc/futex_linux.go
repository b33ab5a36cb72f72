//go:build linux

package ipc

import (
	"math"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// futex(2) operations. These are the plain, shared ops 0 and 1 of SYS_FUTEX:
// never FUTEX_PRIVATE_FLAG (128), whose waits key on the process's own mm and
// never see a wake from another process, and never the futex2 syscalls
// (futex_wait/futex_wake), which take different arguments.
const (
	opFutexWait = 0 // FUTEX_WAIT
	opFutexWake = 1 // FUTEX_WAKE
)

// errTimedOut is returned by futexWait when the timeout expired. It is a
// package value so the wait path does not allocate (as x/sys errnoErr boxes
// its common errnos once).
var errTimedOut error = syscall.ETIMEDOUT

// futexWait implements the kernel contract of FUTEX_WAIT: atomically, if
// *addr == val, sleep until a FUTEX_WAKE on the same word (from any process
// mapping it), until timeout elapses (a negative timeout means none), or until
// a signal interrupts; if *addr != val, return at once.
//
// Every return may be spurious: callers loop and re-check their condition.
// EAGAIN (value changed) and EINTR (signal) therefore return nil, ETIMEDOUT
// returns errTimedOut, anything else is a programming error reported as a
// *os.SyscallError.
//
// It uses Syscall6, not RawSyscall: the wait blocks, and the runtime must be
// told (entersyscall) so it can hand this thread's P to other goroutines.
func futexWait(addr *atomic.Uint32, val uint32, timeout time.Duration) error {
	var ts syscall.Timespec
	var tsp *syscall.Timespec
	if timeout >= 0 {
		ts = syscall.NsecToTimespec(int64(timeout))
		tsp = &ts
	}
	_, _, e := syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opFutexWait,
		uintptr(val), uintptr(unsafe.Pointer(tsp)), 0, 0)
	switch e {
	case 0, syscall.EAGAIN, syscall.EINTR:
		return nil
	case syscall.ETIMEDOUT:
		return errTimedOut
	}
	return os.NewSyscallError("futex wait", e)
}

// futexWake implements FUTEX_WAKE: wake at most n waiters sleeping on addr in
// any process, and report how many woke. A wake with no sleepers costs one
// syscall (about 0.3 µs here), which is why callers first consult a waiters
// count.
func futexWake(addr *atomic.Uint32, n int) int {
	futexWakes.Add(1)
	if n <= 0 || n > math.MaxInt32 {
		n = math.MaxInt32
	}
	// RawSyscall6: a wake never blocks, and skipping entersyscall keeps it
	// from waking a sleeping sysmon, which would then poll every 20 µs for
	// a while, each time preempting whatever runs on its CPU.
	r, _, e := syscall.RawSyscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opFutexWake,
		uintptr(n), 0, 0, 0)
	if e != 0 {
		// FUTEX_WAKE fails only on a bad address or op: an invariant broke.
		panic("ipc: futex wake on a word outside any mapping: " + e.Error())
	}
	return int(r)
}

// futexWakes counts FUTEX_WAKE calls, for tests that check when wakes are
// issued. The add is noise next to the system call it counts.
var futexWakes atomic.Uint64

// osYield gives up the CPU to another runnable thread, if any
// (sched_yield(2)); the calling thread stays runnable.
func osYield() { syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
