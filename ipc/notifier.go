package ipc

import (
	"context"
	"sync/atomic"
	"time"
)

const (
	lineSize = 64 // cache line; layouts keep words of different writers on different lines

	// defaultSpin is how long a blocked call polls before it sleeps on a
	// futex. On this class of machine a futex wake of an idle vCPU costs
	// ~57 µs per hop, a spin hand-off under 1 µs; polling a little under that
	// wake cost keeps a steady stream on the fast path while an idle waiter
	// stops burning CPU within tens of microseconds. It is a time, not an
	// iteration count, so it means the same on every CPU.
	defaultSpin = 50 * time.Microsecond

	// pauseSpin is the part of the spin spent in a tight PAUSE loop before
	// switching to yielding polls.
	pauseSpin = 10 * time.Microsecond

	// sleepSlice bounds one futex sleep, so that a sleeper re-checks the
	// closed flag, its peer's liveness and its context even if a wake is lost
	// (a peer died between publishing and waking).
	sleepSlice = 100 * time.Millisecond

	// spinCheckEvery is how many PAUSEs pass between clock reads while
	// spinning (a clock read costs ~25 ns, a PAUSE ~40 ns on recent Xeons).
	spinCheckEvery = 32
)

// eventWords is an event count in shared memory: seq is the futex word,
// waiters counts processes that announced (Prepare) they may sleep on seq.
//
// The protocol is Dekker's: a waiter increments waiters, then reads seq, then
// re-checks its condition; a notifier publishes its change, then reads
// waiters, and only if nonzero bumps seq and calls FUTEX_WAKE. With
// sequentially consistent atomics one of the two always sees the other, so a
// wake is never lost and a notify with nobody waiting costs one load.
type eventWords struct {
	seq     atomic.Uint32
	waiters atomic.Uint32
}

// reset zeroes both words for a constructor. Each is an atomic store: other
// processes may already be touching them through a stale view, and a plain
// struct store next to atomic accesses of the same words is a data race.
func (e *eventWords) reset() {
	e.seq.Store(0)
	e.waiters.Store(0)
}

func (e *eventWords) prepare() uint32 {
	e.waiters.Add(1)
	return e.seq.Load()
}

func (e *eventWords) cancel() { e.waiters.Add(^uint32(0)) }

// notify wakes every sleeper if anyone announced a wait.
func (e *eventWords) notify() {
	if e.waiters.Load() != 0 {
		e.wakeAll()
	}
}

// wakeAll bumps seq unconditionally and wakes every sleeper. A waiter that
// has prepared but not yet entered FUTEX_WAIT then fails the value check.
func (e *eventWords) wakeAll() {
	e.seq.Add(1)
	futexWake(&e.seq, 0)
}

// sleep blocks on seq while it equals key, for at most timeout, then retracts
// the wait announced by prepare. It returns errTimedOut on timeout.
func (e *eventWords) sleep(key uint32, timeout time.Duration) error {
	err := futexWait(&e.seq, key, timeout)
	e.cancel()
	return err
}

// sliceFor returns how long the next sleep may last: sleepSlice, cut short by
// ctx's deadline. ok is false once the deadline has passed.
func sliceFor(ctx context.Context) (d time.Duration, ok bool) {
	d = sleepSlice
	if dl, has := ctx.Deadline(); has {
		left := time.Until(dl)
		if left <= 0 {
			return 0, false
		}
		d = min(d, left)
	}
	return d, true
}

// ctxErr returns ctx's error, or DeadlineExceeded once its deadline passed
// even if the context's timer has not fired yet.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, ok := sliceFor(ctx); !ok {
		return context.DeadlineExceeded
	}
	return nil
}

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
	n.l.ev.seq.Store(0)
	n.l.ev.waiters.Store(0)
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

// Cancel retracts a Prepare whose condition turned out to hold already.
func (n *Notifier) Cancel() { n.l.ev.cancel() }

// Wait blocks until a Notify that happened after the Prepare that returned
// key, or until ctx is done (returning ctx's error). It polls for up to ~50 µs
// before sleeping on the futex; while it polls, Notify issues a wake syscall.
// It may return nil spuriously: re-check the condition and Prepare again.
func (n *Notifier) Wait(ctx context.Context, key uint32) error {
	ev := &n.l.ev
	if spinUntil(defaultSpin, func() bool { return ev.seq.Load() != key }) {
		ev.cancel()
		return nil
	}
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		if err := ctxErr(ctx); err != nil {
			ev.cancel()
			return err
		}
		if stop == nil && ctx.Done() != nil {
			stop = context.AfterFunc(ctx, ev.wakeAll)
		}
		d, _ := sliceFor(ctx)
		if err := futexWait(&ev.seq, key, d); err != nil && err != errTimedOut {
			ev.cancel()
			return err
		}
		if ev.seq.Load() != key {
			ev.cancel()
			return nil
		}
	}
}

// Notify wakes every process and goroutine waiting on n. It costs one atomic
// load when nobody has called Prepare.
func (n *Notifier) Notify() { n.l.ev.notify() }

// spinUntil polls cond for at most d and reports whether cond became true.
// For the first pauseSpin it polls with PAUSE in between; after that it
// yields the CPU between polls (sched_yield), so that when cores are
// oversubscribed the peer it waits for can run on this CPU instead of
// waiting for the spinner's time slice to end.
func spinUntil(d time.Duration, cond func() bool) bool {
	if d <= 0 {
		return cond()
	}
	start := time.Now()
	yield := false
	for i := 1; ; i++ {
		if cond() {
			return true
		}
		if yield {
			osYield()
		} else {
			cpuRelax()
		}
		if yield || i%spinCheckEvery == 0 {
			e := time.Since(start)
			if e > d {
				return cond()
			}
			yield = e > pauseSpin
		}
	}
}
