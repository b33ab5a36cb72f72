package pool

import "runtime"

// A short call's result normally travels worker → collector goroutine →
// caller goroutine. Each hop that finds its thread asleep costs a wake-up,
// and on a VM a wake-up of an idle vCPU is a hypervisor round trip: on the
// 2-vCPU guest this was measured at ~20 µs per hop (a futex ping-pong
// between two pinned threads: 40 µs per round trip, against 0.1 µs when
// both poll). A caller blocked in Apply would wait through up to three
// such hops: its own thread parked, the collector's, and the Go runtime's
// spare thread that readying a goroutine wakes.
//
// So the caller of a single-item call attends its result itself: for a
// learned budget it polls its worker's result ring and, when its message
// comes, consumes it on its own goroutine, exactly as the collector would
// (collectOneLocked), while the collector stays parked and the worker,
// told that nobody is parked, rings nobody. Past the budget it leaves the
// ring to the collector and blocks as before.
//
// It polls only where a CPU is idle for it: when fewer workers are busy
// than the process may use CPUs, since a polling caller on a full machine
// takes a CPU from the workers.

// attend polls for c's result while that pays; see above. c is a
// single-item call being sent or sent to one worker.
func (c *call) attend() {
	w := c.sentTo.Load()
	if w == nil || c.finished.Load() {
		return
	}
	if !w.recvMu.TryLock() {
		return // the collector is consuming: it will deliver
	}
	defer w.recvMu.Unlock()
	sl := w.recvLink
	if sl == nil || w.recvBroken {
		return
	}
	if !w.p.mayAttend(w, c) {
		return
	}
	// Clear parked so that the worker does not ring the collector for
	// what this goroutine consumes; restore it below, ringing the bell if
	// a message came meanwhile that the collector must not miss.
	wasParked := sl.ctl.parked.Swap(0) != 0
	defer func() {
		if wasParked {
			sl.ctl.parked.Store(1)
			if sl.in.Readable() {
				sl.wakeCollector()
			}
		}
	}()
	ready := func() bool { return c.finished.Load() || sl.in.Readable() }
	for w.attendPoll.Poll(ready) && !c.finished.Load() {
		w.attended.Add(1)
		if !w.collectOneLocked(sl) {
			w.peerBrokenLocked(sl)
			return
		}
	}
}

// peerBrokenLocked hands the collector the verdict that an attending
// caller reached (the link ended, or the worker broke the protocol): it
// ends the worker, as it would have had it read the message itself.
// Closing the rings makes its wait return. recvMu is held.
func (w *slot) peerBrokenLocked(sl *shmLink) {
	w.recvBroken = true
	sl.peerGone()
}

// mayAttend reports whether c's caller may poll w's ring: c's chunk is
// the only one in flight on w, and fewer workers are busy than this
// process may use CPUs, so that the poll takes no CPU a worker needs.
// Only c's messages may be consumed by its caller: a message of another
// call would run that call's callbacks (Imap, Progress) on its goroutine;
// the worker answers in send order, so while c is alone in flight, every
// message in the ring is c's. One look under p.mu, on every Apply.
func (p *core) mayAttend(w *slot, c *call) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(w.inflight) != 1 || w.inflight[0].c != c || w.inflight[0].pull != nil {
		return false
	}
	busy := 0
	for _, x := range p.slots {
		if len(x.inflight) > 0 {
			busy++
		}
	}
	return busy < runtime.NumCPU()
}
