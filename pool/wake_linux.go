//go:build linux

package pool

import (
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bell is a parked collector's doorbell: an eventfd(2) counter that the
// worker rings after committing a result (shmLink.wakeParked), and that the
// parent rings itself when the worker dies or another collector must look.
// The collector waits on it through Go's netpoller, so a wait holds no
// thread and a ring goes from the worker's write straight to the waiting
// goroutine, with no reader goroutine and no socket message in between.
//
// Reads and writes are raw system calls (this file's one use of unsafe:
// the address of a stack uint64 for the 8-byte counter). Both never block:
// the descriptor is non-blocking, and the counter cannot overflow (each
// ring adds one, each wait drains it). A raw call skips the runtime's
// entersyscall, which would wake a sleeping sysmon; sysmon then polls every
// 20 µs for a while, each time preempting the pinned worker on its CPU.
type bell struct {
	f  *os.File
	rc syscall.RawConn
}

// bellFD is the bell's descriptor number in the worker (ExtraFiles[2];
// ctlFD and linkFD come first).
const bellFD = ctlFD + 2

func newBell() (*bell, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	f := os.NewFile(uintptr(fd), "mproc-bell") // non-blocking: joins the netpoller
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &bell{f: f, rc: rc}, nil
}

// wait returns once the bell has rung since the last wait (true), or after
// d (false).
func (b *bell) wait(d time.Duration) bool {
	rang := false
	if err := b.f.SetReadDeadline(time.Now().Add(d)); err != nil {
		time.Sleep(min(d, time.Millisecond)) // not pollable: the collector re-checks its ring
		return false
	}
	b.rc.Read(func(fd uintptr) bool {
		var n uint64
		_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&n)), 8)
		rang = e == 0
		return e != unix.EAGAIN
	})
	return rang
}

// ring wakes the waiter, now or at its next wait.
func (b *bell) ring() {
	b.rc.Write(func(fd uintptr) bool {
		ringFD(fd)
		return true
	})
}

func (b *bell) close() error { return b.f.Close() }

// ringFD rings the bell at descriptor fd: the worker's end, which holds the
// inherited descriptor bellFD. An error (the parent closed the link) needs
// no answer: nobody waits any more.
func ringFD(fd uintptr) {
	one := uint64(1)
	unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&one)), 8)
}
