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

// eventWords is an event count in shared memory, one 64-bit word: the low
// 32 bits are seq, the futex word sleepers wait on; the high 32 bits count
// the announcements of waiters that may be asleep on the current seq.
//
// The protocol is Dekker's: a waiter announces itself and reads seq in one
// atomic add (prepare), then re-checks its condition, then sleeps while seq
// still equals what it read; a notifier publishes its change, then reads the
// word, and only if the count is nonzero bumps seq and calls FUTEX_WAKE. With
// sequentially consistent atomics one of the two always sees the other, so a
// wake is never lost and a notify with nobody waiting costs one load.
//
// Invariant: every bump of seq also zeroes the count, in the same
// compare-and-swap (wakeAll). A wake thus consumes the announcements it
// answers, and each sleeper announces itself again before its next sleep.
// Consequences:
//   - An announcement and the key it was taken with stand or fall together:
//     if a bump erased it, seq is no longer the key, so FUTEX_WAIT returns at
//     once (EAGAIN) and the waiter loops and announces again. No erasure can
//     strand a sleeper.
//   - cancel(key) takes back an announcement only while seq still equals
//     key, which proves no bump erased it (seq returns to key only after
//     2^32 bumps); otherwise there is nothing left to take back, and the
//     count never drops below the live announcements.
//   - A waiter killed while announced (SIGKILL inside FUTEX_WAIT) leaves its
//     announcement behind only until the next notify, which clears it with
//     one FUTEX_WAKE that finds nobody; later notifies cost one load again.
type eventWords struct {
	w atomic.Uint64
}

const waiterOne = 1 << 32 // one announcement in the count half

// reset zeroes the word for a constructor. It is an atomic store: other
// processes may already be touching it through a stale view, and a plain
// struct store next to atomic accesses of the same word is a data race.
func (e *eventWords) reset() { e.w.Store(0) }

// prepare announces a waiter and returns the key to sleep on.
//
// The count cannot overflow into garbage: announcements that nobody takes
// back (Notifier.Cancel, killed waiters) are cleared by the next notify, and
// should 2^31 of them pile up without one, prepare clears them itself.
func (e *eventWords) prepare() uint32 {
	w := e.w.Add(waiterOne)
	if w>>63 != 0 {
		e.wakeAll()
		w = e.w.Add(waiterOne)
	}
	return uint32(w)
}

// cancel takes back the announcement that prepare made with key, if no wake
// has consumed it yet.
func (e *eventWords) cancel(key uint32) {
	for {
		w := e.w.Load()
		if uint32(w) != key || w < waiterOne {
			return // a wake consumed it (and every other announcement on key)
		}
		if e.w.CompareAndSwap(w, w-waiterOne) {
			return
		}
	}
}

// waiting returns how many announcements stand.
func (e *eventWords) waiting() uint32 { return uint32(e.w.Load() >> 32) }

// seq returns the current futex value.
func (e *eventWords) seq() uint32 { return uint32(e.w.Load()) }

// notify wakes every sleeper if anyone announced a wait.
func (e *eventWords) notify() {
	if e.w.Load() >= waiterOne {
		e.wakeAll()
	}
}

// wakeAll bumps seq and clears the count in one step, then wakes every
// sleeper. A waiter that has prepared but not yet entered FUTEX_WAIT then
// fails the value check; one that is asleep is woken and announces itself
// again if it must sleep once more.
func (e *eventWords) wakeAll() {
	for {
		w := e.w.Load()
		if e.w.CompareAndSwap(w, uint64(uint32(w)+1)) {
			break
		}
	}
	futexWake(seqWord(&e.w), 0)
}

// sleep blocks on seq while it equals key, for at most timeout, then takes
// back the announcement prepare made (if no wake consumed it). It returns
// errTimedOut on timeout.
func (e *eventWords) sleep(key uint32, timeout time.Duration) error {
	err := futexWait(seqWord(&e.w), key, timeout)
	e.cancel(key)
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
	if spinUntil(defaultSpin, func() bool { return ev.seq() != key }) {
		ev.cancel(key)
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
			ev.cancel(key)
			return err
		}
		if stop == nil && ctx.Done() != nil {
			stop = context.AfterFunc(ctx, ev.wakeAll)
		}
		d, _ := sliceFor(ctx)
		if err := futexWait(seqWord(&ev.w), key, d); err != nil && err != errTimedOut {
			ev.cancel(key)
			return err
		}
		if ev.seq() != key {
			ev.cancel(key)
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
