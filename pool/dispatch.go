package pool

import (
	"fmt"
	"slices"
	"time"
)

// depth is how many task messages may be in flight per worker: one
// running, one waiting in its link, so a worker never idles between
// messages yet a slow task holds back at most one message behind it.
const depth = 2

// submit queues a call, split into chunks of its chunk size, or of guided
// sizes when that is 0 (see chunkSizes).
func (p *core) submit(c *call) error {
	c.owner = p
	if c.cfg.timeout > 0 {
		p.watchOnce.Do(func() { go p.watchTimeouts() })
	}
	p.mu.Lock()
	if err := p.closedErrLocked(); err != nil {
		p.mu.Unlock()
		return err
	}
	if !p.tryPullLocked(c) {
		for lo, n := range chunkSizes(c.args, c.cfg.chunkSize(), len(p.slots)) {
			p.pending = append(p.pending, &chunk{c: c, args: c.args, lo: lo, hi: lo + n})
		}
	}
	p.mu.Unlock()
	// Hand work to idle workers from this goroutine when their sender is
	// free and the message fits now; otherwise (or for what is left) wake
	// their senders. The first pass gives each worker one message so that
	// a call of few chunks is spread over the workers, not queued two-deep
	// on the first one.
	for _, limit := range []int{1, depth} {
		for _, w := range p.slots {
			if p.nothingToSend() {
				return nil
			}
			w.pumpInline(limit)
		}
	}
	return nil
}

// closedErrLocked is the error a new call gets, or nil while the pool
// accepts work.
func (p *core) closedErrLocked() error {
	switch {
	case p.broken != nil:
		return p.broken
	case p.state != stateOpen:
		return ErrClosed
	}
	return nil
}

// take pops the next chunk for w, or reports that w should be stopped
// because the pool is closing and idle.
func (p *core) take(w *slot, limit int) (ch *chunk, l link, stop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l = w.l
	if l == nil || w.retiring || w.timedOut != nil || w.stopSent {
		return nil, nil, false
	}
	// Pull messages of calls that finished are never sent: drop them first,
	// so that a closing pool's last one does not hold back the stop.
	w.pullQ = slices.DeleteFunc(w.pullQ, func(ch *chunk) bool {
		if ch.c.finished.Load() {
			p.pullEndedLocked(ch.pull, nil, nil)
			return true
		}
		return false
	})
	if p.state == stateClosing && len(p.pending) == 0 && len(w.inflight) == 0 && len(w.pullQ) == 0 {
		w.stopSent = true
		return nil, l, true
	}
	for len(w.inflight) < limit && len(w.pullQ) > 0 {
		ch = w.pullQ[0]
		w.pullQ[0] = nil
		w.pullQ = w.pullQ[1:]
		ch.sent = false
		w.inflight = append(w.inflight, ch)
		return ch, l, false
	}
	for len(w.inflight) < limit && len(p.pending) > 0 {
		ch = p.pending[0]
		p.pending[0] = nil
		if len(p.pending) == 1 {
			p.pending = p.pending[:0] // keep the array: the next call reuses it
		} else {
			p.pending = p.pending[1:]
		}
		if ch.c.finished.Load() {
			ch = nil
			continue
		}
		p.nextJob++
		ch.job, ch.sent = p.nextJob, false
		if len(w.inflight) == 0 {
			ch.started = time.Now()
		}
		w.inflight = append(w.inflight, ch)
		return ch, l, false
	}
	return nil, l, false
}

// markSent gives ch, encoded and about to be sent, its send count on the
// slot's current link, so
// that an abort can name it. It returns false, dropping ch, if its call
// finished while it was encoded: nothing is sent.
func (p *core) markSent(w *slot, ch *chunk) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch.c.finished.Load() {
		if i := slices.Index(w.inflight, ch); i >= 0 {
			w.inflight = slices.Delete(w.inflight, i, i+1)
			if ch.pull != nil {
				p.pullEndedLocked(ch.pull, nil, nil)
			}
		}
		return false
	}
	ch.seq, ch.sent = w.sent, true
	w.sent++
	if ch.c.n == 1 && ch.pull == nil {
		ch.c.sentTo.Store(w)
	}
	return true
}

// abortCall runs once when c finishes early (a failure with fail-fast, a
// cancel, Terminate): its queued chunks are dropped and workers are asked
// to skip the items of its messages they have not started. Its chunks
// still running in a worker are handed to a finished stand-in without
// their arguments, so that nothing of the call (its results, its encoded
// arguments) stays reachable from the pool once it returned.
func (p *core) abortCall(c *call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = slices.DeleteFunc(p.pending, func(ch *chunk) bool { return ch.c == c })
	var ghost *call
	for _, w := range p.slots {
		w.pullQ = slices.DeleteFunc(w.pullQ, func(ch *chunk) bool {
			if ch.c == c {
				p.pullEndedLocked(ch.pull, nil, nil)
			}
			return ch.c == c
		})
		for _, ch := range w.inflight {
			if ch.c != c || !ch.sent {
				continue // an unsent one is dropped by markSent
			}
			if w.l != nil {
				w.l.abort(ch.seq, ch.job)
			}
			if ghost == nil {
				ghost = c.ghost()
			}
			ch.c, ch.args = ghost, nil
			if pl := ch.pull; pl != nil {
				pl.c = ghost
				if pl.b != nil {
					pl.b.hdr.closed.Store(1) // workers stop claiming
				}
			}
		}
	}
}

// dropPullQ ends the participations w will never send because it stops
// for good; their items run elsewhere.
func (p *core) dropPullQ(w *slot) {
	p.mu.Lock()
	q := w.pullQ
	w.pullQ = nil
	var lost []*pulled
	for _, ch := range q {
		if p.pullEndedLocked(ch.pull, nil, nil) {
			lost = append(lost, ch.pull)
		}
	}
	p.mu.Unlock()
	for _, pl := range lost {
		p.recoverPull(pl)
	}
}

// requeue puts ch at the front of the queue, or fails its call once the
// pool cannot run it: Terminate cancelled what was queued when it ran, and
// a broken pool has no worker left.
func (p *core) requeue(ch *chunk) {
	ch.started = time.Time{}
	p.mu.Lock()
	var err error
	switch {
	case p.state == stateTerminated:
		err = ErrTerminated
	case p.broken != nil:
		err = p.broken
	}
	if err != nil {
		p.mu.Unlock()
		ch.c.cancel(err)
		return
	}
	p.pending = append([]*chunk{ch}, p.pending...)
	p.mu.Unlock()
	p.kickAll()
}

// slotGone records that w gave up starting a process. Once no slot is left
// live or starting, the pool is broken: every pending and later call fails
// with an error wrapping err, and Close reports it.
func (p *core) slotGone(w *slot, err error) {
	p.mu.Lock()
	w.state = slotGone
	for _, x := range p.slots {
		if x.state != slotGone {
			p.mu.Unlock()
			return
		}
	}
	if p.broken == nil {
		p.broken = fmt.Errorf("pool: no worker left and none can be started: %w", err)
	}
	broken := p.broken
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, ch := range pending {
		ch.c.cancel(broken)
	}
}

func (p *core) kickAll() {
	for _, w := range p.slots {
		w.kickSelf()
	}
}

// nothingToSend reports whether no chunk and no pull message waits.
func (p *core) nothingToSend() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) > 0 {
		return false
	}
	for _, w := range p.slots {
		if len(w.pullQ) > 0 {
			return false
		}
	}
	return true
}

// moreToSend reports whether senders have work: queued chunks, or stop
// messages to send because the pool is closing.
func (p *core) moreToSend() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) > 0 || p.state != stateOpen {
		return true
	}
	for _, w := range p.slots {
		if len(w.pullQ) > 0 {
			return true
		}
	}
	return false
}

// accepting reports whether the pool still takes and runs work.
func (p *core) accepting() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == stateOpen || (p.state == stateClosing && len(p.pending) > 0)
}
