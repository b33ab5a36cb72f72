package ipc

import (
	"sync"
	"sync/atomic"
)

// gate guards memory that this process will let go (a Queue's mapping,
// unmapped by Detach). The rule, as in cilium/ebpf's ringbuf.Reader.Close:
// memory is released only when no call can be inside it, because a load or
// store after munmap(2) is a "fatal error: fault" nobody can recover from.
//
// Invariants:
//   - every call that touches the memory holds the gate (enter returned
//     true) from before its first access to after its last, including any
//     context.AfterFunc it registered (await stops and awaits those);
//   - shut marks the gate closed before it waits, so a call entering later
//     fails at once instead of reaching the memory;
//   - interrupt, run by shut after closing and before waiting, makes every
//     call blocked inside return soon (it sets a flag the waits read as
//     part of their ready check, then wakes their event counts);
//   - release runs with the write lock held: no call is inside, none can
//     enter, and everything the calls did happens before it.
type gate struct {
	mu     sync.RWMutex // read-held by each call inside, write-held by shut
	closed atomic.Bool
}

// enter admits a call, or reports false once the gate is shut. A true
// return must be paired with exit.
func (g *gate) enter() bool {
	g.mu.RLock()
	if g.closed.Load() {
		g.mu.RUnlock()
		return false
	}
	return true
}

// exit ends a call that enter admitted.
func (g *gate) exit() { g.mu.RUnlock() }

// shut closes the gate, interrupts blocked calls, waits until no call is
// inside and runs release. Only the first shut does anything; it reports
// whether it was that one.
func (g *gate) shut(interrupt, release func()) bool {
	if g.closed.Swap(true) {
		return false
	}
	interrupt()
	g.mu.Lock()
	defer g.mu.Unlock()
	release()
	return true
}
