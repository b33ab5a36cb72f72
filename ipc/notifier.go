package ipc

import (
	"context"
)

// NotifierSize is the number of bytes a Notifier occupies in shared memory.
const NotifierSize = 64

type notifierLayout struct {
	ev eventWords
	_  [lineSize - 8]byte
}

// Notifier is an event count in shared memory: it lets processes sleep until
// "something changed" without missing a change that races with going to
// sleep. The waiting side calls Prepare, re-checks its own condition, and
// then calls Wait with the key (or Cancel if the condition already holds);
// the changing side publishes its change and calls Notify.
//
// Notify costs a single atomic load when nobody waits. A Notifier holds no
// process-local state: any number of goroutines and processes may use views
// of the same memory concurrently. Wake-ups may be spurious.
type Notifier struct {
	l *notifierLayout
}

// NewNotifier initialises a Notifier in mem, which must be at least
// NotifierSize bytes, 64-byte aligned, and shared with the other processes
// (typically a sub-slice of a shm.Segment). Other views attach with
// AttachNotifier.
func NewNotifier(mem []byte) (*Notifier, error) {
	n, err := AttachNotifier(mem)
	if err != nil {
		return nil, err
	}
	n.l.ev.reset()
	return n, nil
}

// AttachNotifier returns a view of a Notifier that NewNotifier initialised in
// mem. Every bit pattern is a valid Notifier state, so nothing is validated
// beyond size and alignment.
func AttachNotifier(mem []byte) (*Notifier, error) {
	l := view[notifierLayout](mem)
	if l == nil {
		return nil, ErrLayout
	}
	return &Notifier{l: l}, nil
}

// Prepare announces that the caller may wait, and returns the key to pass to
// Wait. Call it before re-checking the condition being waited for; a Notify
// after Prepare makes Wait(key) return. Every Prepare must be followed by
// exactly one Wait or Cancel.
func (n *Notifier) Prepare() uint32 { return n.l.ev.prepare() }

// Cancel retracts a Prepare whose condition turned out to hold already. It
// costs nothing: the announcement stays until the next Notify, which then
// issues one wake system call that finds nobody and clears it.
func (n *Notifier) Cancel() {}

// Wait blocks until a Notify that happened after the Prepare that returned
// key, or until ctx is done (returning ctx's error). It polls for up to ~50 µs
// before sleeping on the futex; while it polls, Notify issues a wake syscall.
// It may return nil spuriously: re-check the condition and Prepare again.
func (n *Notifier) Wait(ctx context.Context, key uint32) error {
	ev := &n.l.ev
	err := await(ctx, ev, defaultSpin, nil, func() bool { return ev.seq() != key }, nil)
	ev.cancel(key)
	if err == nil {
		// The wake that ended the wait may be ctx's own (its AfterFunc bumps
		// seq): report the context rather than a Notify that did not come.
		err = ctx.Err()
	}
	return err
}

// Notify wakes every process and goroutine waiting on n. It costs one atomic
// load when nobody has called Prepare.
func (n *Notifier) Notify() { n.l.ev.notify() }
