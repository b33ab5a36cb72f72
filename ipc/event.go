package ipc

import (
	"sync/atomic"
	"time"
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
