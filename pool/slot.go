package pool

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mproc/mproc/ipc"
)

// slot is one worker position of a pool: a proc, replaced when it ends.
// Its goroutines: run (the slot's life), per proc a sender (sendLoop) and
// the collector (collect, on run's goroutine).
type slot struct {
	p    *core
	idx  int
	kick chan struct{}

	sendMu  sync.Mutex // held while producing into the link
	sendBuf []byte     // guarded by sendMu
	// handoff (guarded by sendMu) says that sendBuf holds a message an
	// inline pump could not send without waiting: the sender goroutine
	// sends it before anything else.
	handoff bool

	// guarded by p.mu
	proc     proc
	l        link
	state    int
	inflight []*chunk // in send order; [0] is running
	pullQ    []*chunk // pull messages to send before any pending chunk
	retiring bool
	timedOut *chunk
	stopSent bool
	id       workerID
	sent     uint64 // task messages sent on the current link
	restarts int
	// Insights (WorkerStats): the start-up time of the current process,
	// when it became live, how long earlier ones were, the slowest task
	// messages.
	startup   time.Duration
	liveSince time.Time
	livedFor  time.Duration
	slowest   []TaskTime

	tasks atomic.Int64
	busy  atomic.Int64

	// The result ring's consumer: the collector, or a caller attending its
	// own call (attend.go), whoever holds recvMu. recvLink is the link
	// being collected (nil once the collector has left it, before the
	// link closes); recvBroken tells the collector that an attending
	// caller found the peer broken.
	recvMu     sync.Mutex
	recvLink   *shmLink
	recvBuf    []byte
	recvBroken bool
	attendPoll ipc.Poller   // guarded by recvMu
	attended   atomic.Int64 // messages consumed by attending callers (for tests)
}

// Slot states. A slot is starting while its first or a replacement
// process starts; gone once it gave up replacing it.
const (
	slotStarting = iota
	slotLive
	slotGone
)

// maxStartFailures is how many starts in a row a slot tries before it
// gives up (with a growing pause between them).
const maxStartFailures = 5

// start starts the slot's process; the pool's lock must not be held.
func (w *slot) start() error {
	begin := time.Now()
	pr, err := w.p.backend.start(w.idx)
	if err != nil {
		return startError(w.idx, err)
	}
	p := w.p
	now := time.Now()
	p.mu.Lock()
	w.startup, w.liveSince = now.Sub(begin), now
	w.proc, w.l, w.id, w.state, w.sent = pr, pr.link(), pr.id(), slotLive, 0
	w.retiring, w.timedOut, w.stopSent = false, nil, false
	if p.state == stateTerminated {
		pr.kill() // Terminate ran while it started
	}
	p.mu.Unlock()
	return nil
}

// run owns the slot: it collects results until the process ends, settles
// its in-flight tasks, and starts a replacement while the pool needs one.
func (w *slot) run() {
	p := w.p
	defer p.wg.Done()
	failures := 0
	for {
		w.serveOne()
		p.mu.Lock()
		keep := p.state == stateOpen || (p.state == stateClosing && len(p.pending) > 0)
		if keep {
			w.state = slotStarting
		}
		p.mu.Unlock()
		if !keep {
			p.dropPullQ(w)
			p.kickAll() // a closing pool may now be idle
			return
		}
		for {
			err := w.start()
			if err == nil {
				failures = 0
				break
			}
			failures++
			if failures >= maxStartFailures || !p.accepting() {
				p.slotGone(w, err)
				p.dropPullQ(w)
				return
			}
			time.Sleep(time.Duration(failures) * 50 * time.Millisecond)
		}
		p.mu.Lock()
		w.restarts++
		p.mu.Unlock()
	}
}

// serveOne runs the sender and collector for the current process and
// returns once it is dead and reaped and its chunks are settled.
func (w *slot) serveOne() {
	p := w.p
	p.mu.Lock()
	pr, l := w.proc, w.l
	p.mu.Unlock()

	stop := make(chan struct{})
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		w.sendLoop(stop)
	}()
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		// When the process exits, let the collector drain and return.
		<-pr.exited()
		l.peerGone()
	}()
	w.kickSelf()
	w.collect(l)
	// The link is closed or broken: the process is gone or going.
	pr.kill()
	werr := pr.reap()
	close(stop)
	<-senderDone
	<-monDone
	// Detach the link under sendMu so that no inline pump still uses it,
	// then release it: nobody touches the link any more.
	w.sendMu.Lock()
	p.mu.Lock()
	id := w.id
	w.proc, w.l, w.id = nil, nil, workerID{}
	w.livedFor += time.Since(w.liveSince)
	w.liveSince = time.Time{}
	p.mu.Unlock()
	w.handoff = false // its chunk is in inflight: settle decides
	w.sendMu.Unlock()
	taken := l.taken()
	var rec *claimRecord
	if sl, ok := l.(*shmLink); ok {
		r := sl.claim()
		rec = &r
	}
	if err := l.close(); err != nil {
		p.releaseFailed(err)
	}
	w.settle(werr, id, taken, rec)
}

// sendLoop gives the worker chunks while it has room.
func (w *slot) sendLoop(stop <-chan struct{}) {
	for {
		select {
		case <-w.kick:
		case <-stop:
			return
		}
		w.pump()
	}
}

// pump sends chunks to the worker while it has room. It runs on the
// slot's sender goroutine, the only one that may wait for room in the
// link. sendMu makes it the link's single producer and keeps the link
// open while it is used.
func (w *slot) pump() {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	w.pumpLocked(depth, false)
}

// pumpInline is pump run on a submitting goroutine, with at most limit
// chunks in flight on the worker. It never waits (callers block on Go
// channels only): if the sender holds sendMu it only kicks it, and a
// message that does not fit in the link now (a full ring, a fragmented
// message) is handed to the sender goroutine. Sending inline when the
// worker is idle saves a goroutine hand-off per Apply.
func (w *slot) pumpInline(limit int) {
	if !w.sendMu.TryLock() {
		w.kickSelf() // its pump is busy: make it look again
		return
	}
	defer w.sendMu.Unlock()
	w.pumpLocked(limit, true)
}

// pumpLocked sends with sendMu held; inline says it must not wait.
func (w *slot) pumpLocked(limit int, inline bool) {
	p := w.p
	if w.handoff {
		if inline {
			w.kickSelf() // keep the order: the sender goes first
			return
		}
		w.handoff = false
		p.mu.Lock()
		l := w.l
		p.mu.Unlock()
		if l == nil || l.send(context.Background(), w.sendBuf) != nil {
			return // the collector sees the death and settles
		}
	}
	for {
		ch, l, stopNow := p.take(w, limit)
		if l == nil {
			return
		}
		if stopNow {
			w.sendBuf = appendHeader(w.sendBuf[:0], msgHeader{kind: kindStop})
		} else if ch == nil {
			return
		} else {
			var flags uint8
			if ch.c.failFast {
				flags = flagFailFast
			}
			if ch.pull != nil {
				if ch.c.each != nil || ch.c.cfg.progress != nil {
					flags |= flagStream // its caller consumes results as they come
				}
				w.sendBuf = encodePull(w.sendBuf[:0], ch.pull, ch.c.e, flags)
				if sl, ok := l.(*shmLink); ok {
					sl.setCollectSpin(false) // results come quietly: sleep
				}
			} else {
				w.sendBuf = encodeTask(w.sendBuf[:0], ch.c.e, ch.job, flags, ch.args, ch.lo, ch.hi)
			}
			if !p.markSent(w, ch) {
				continue // its call finished meanwhile
			}
		}
		var err error
		if inline {
			if err = l.trySend(w.sendBuf); err == errWouldBlock {
				w.handoff = true
				w.kickSelf()
				return
			}
		} else {
			err = l.send(context.Background(), w.sendBuf)
		}
		if cap(w.sendBuf) > 2*softMessage && !w.handoff {
			w.sendBuf = nil
		}
		if err != nil || stopNow {
			return // on error, the collector sees the death and settles
		}
	}
}

// collect reads result messages until the link ends. It shares the
// result ring with callers that attend their own short calls (attend.go):
// whoever holds recvMu consumes, one message at a time.
func (w *slot) collect(l link) {
	p := w.p
	sl, _ := l.(*shmLink)
	if sl != nil {
		sl.idle = func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(w.inflight) == 0
		}
	}
	w.recvMu.Lock()
	w.recvLink, w.recvBroken = sl, false
	w.recvMu.Unlock()
	defer func() {
		w.recvMu.Lock()
		w.recvLink, w.recvBuf = nil, nil
		w.recvMu.Unlock()
	}()
	for {
		if sl != nil {
			sl.in.AwaitReadable(sl.park)
		}
		w.recvMu.Lock()
		if w.recvBroken {
			w.recvMu.Unlock()
			return
		}
		if sl != nil && !sl.in.Readable() {
			w.recvMu.Unlock() // an attending caller took it
			continue
		}
		ok := w.collectOneLocked(l)
		w.recvMu.Unlock()
		if !ok {
			return
		}
		// The caller just readied sits in this P's run queue; the next
		// recv would spin on the ring (not yielding the P) and leave it for
		// another P, whose wake-up is a futex wake of an idle CPU (tens of
		// µs on a VM). Let it run here first.
		runtime.Gosched()
	}
}

// collectOneLocked receives one result message and hands its items to
// their call. It reports false when the link is finished or its peer
// broke the protocol: the worker is then treated as dead. recvMu is held.
func (w *slot) collectOneLocked(l link) bool {
	p := w.p
	var err error
	if w.recvBuf, err = l.recv(context.Background(), w.recvBuf); err != nil {
		return false
	}
	buf := w.recvBuf
	if cap(buf) > 2*softMessage {
		w.recvBuf = nil // do not pin a large message's memory
	}
	h, body, err := parseHeader(buf)
	if err != nil || h.kind != kindResult {
		return false // a broken peer: treat as dead
	}
	if h.flags&flagPulled != 0 {
		return w.collectPulled(l, h, body)
	}
	partial := h.flags&flagPartial != 0
	p.mu.Lock()
	var ch *chunk
	var c *call
	timedOut := false
	for i, x := range w.inflight {
		if x.job == h.job {
			ch, c, timedOut = x, x.c, !x.cancelAt.IsZero()
			if !partial {
				w.inflight = slices.Delete(w.inflight, i, i+1) // clears the tail: no stale pointer keeps a finished call
			}
			break
		}
	}
	w.startHeadLocked()
	if h.flags&flagRetire != 0 {
		w.retiring = true
	}
	if ch != nil && h.count > 0 {
		w.noteTime(TaskTime{Func: c.e.name, Index: h.first, Tasks: h.count, Took: time.Duration(h.extra)})
	}
	id := w.id
	p.mu.Unlock()
	if ch == nil {
		return true
	}
	w.tasks.Add(int64(h.count))
	w.busy.Add(int64(h.extra))
	rest, ok := w.deliver(ch, c, timedOut, h, body, id)
	switch {
	case !ok:
		// Items missing or malformed without a reason: a broken peer.
		// Keep what is left as this worker's running chunk so that
		// settle counts an attempt, and end the worker.
		if !partial && rest != nil {
			p.mu.Lock()
			w.inflight = append([]*chunk{rest}, w.inflight...)
			p.mu.Unlock()
		}
		return false
	case rest != nil && !partial && h.flags&flagRetire != 0:
		p.requeue(rest) // skipped by a retiring worker: not an attempt
	}
	if p.moreToSend() {
		w.kickSelf()
	}
	return true
}

// deliver hands a result message's items to their call. It returns the
// items of the chunk still to come, if any (ch itself, advanced), and ok
// false if the message is malformed or short without a reason.
// c is ch's call, read under p.mu; timedOut says its time ran out and its
// tasks were asked to stop: their failures, and the items they skipped,
// are timeouts.
func (w *slot) deliver(ch *chunk, c *call, timedOut bool, h msgHeader, body []byte, id workerID) (rest *chunk, ok bool) {
	want := ch.hi - ch.lo
	if h.count > want {
		return ch, false
	}
	n := 0
	t := tally{c: c}
	for ; n < h.count; n++ {
		if len(body) < 1 {
			break
		}
		st := body[0]
		item, tail, err := nextItem(body[1:])
		if err != nil {
			break
		}
		body = tail
		if !c.finished.Load() {
			t.add(ch.lo+n, outcome(c, ch.lo+n, st, item, id, timedOut))
		}
	}
	t.flush()
	// A partial result leaves ch in flight, where the timeout watcher reads
	// it: advance it under the lock, and restart its clock for what is left.
	w.p.mu.Lock()
	ch.lo += n
	if h.flags&flagPartial != 0 {
		ch.started = time.Now()
	}
	w.p.mu.Unlock()
	complete := n == h.count
	if ch.lo == ch.hi {
		return nil, complete
	}
	switch {
	case !complete:
		return ch, false
	case h.flags&flagPartial != 0:
		return ch, true
	case h.flags&flagAborted != 0:
		if c.finished.Load() {
			return nil, true // the rest was skipped for a finished call
		}
		if timedOut {
			for i := ch.lo; i < ch.hi; i++ {
				c.item(i, &TaskError{Func: c.e.name, Index: i, Pid: id.Pid, Node: id.Node, Err: ErrTaskTimeout})
			}
			return nil, true // skipped because the chunk's time ran out
		}
		return ch, false // an abort nobody asked for
	case h.flags&flagRetire != 0:
		return ch, true
	}
	return ch, false
}

// outcome returns what item i's result (status st, bytes item) means for
// c: nil after storing a good result, else the item's error.
func outcome(c *call, i int, st uint8, item []byte, id workerID, timedOut bool) error {
	if st == stOK {
		if err := c.dec(i, item); err != nil {
			return &TaskError{Func: c.e.name, Index: i, Pid: id.Pid, Node: id.Node, Err: fmt.Errorf("decode result: %w", err)}
		}
		return nil
	}
	err := itemError(st, item, c.e.name, i, id)
	if te, isTE := err.(*TaskError); isTE && timedOut {
		te.Err = fmt.Errorf("%w; the task stopped with: %w", ErrTaskTimeout, te.Err)
	}
	return err
}

// settle decides the fate of the chunks in flight on a process that ended.
// taken is the job the worker said it began last: a chunk sent after it was
// never started and costs no retry.
func (w *slot) settle(werr error, id workerID, taken uint64, rec *claimRecord) {
	p := w.p
	p.mu.Lock()
	chunks := w.inflight
	w.inflight = nil
	planned := w.retiring || w.stopSent
	timedOut := w.timedOut
	terminated := p.state == stateTerminated
	var lost []*pulled
	for _, ch := range chunks {
		if ch.pull != nil && !terminated {
			we := newWorkerError(id, werr)
			if !ch.started.IsZero() {
				we.After = time.Since(ch.started)
			}
			if p.pullEndedLocked(ch.pull, rec, we) {
				lost = append(lost, ch.pull)
			}
		}
	}
	p.mu.Unlock()
	for _, pl := range lost {
		p.recoverPull(pl)
	}
	for _, ch := range chunks {
		c := ch.c
		if ch.pull != nil {
			if terminated {
				c.cancel(ErrTerminated)
				p.mu.Lock()
				p.pullEndedLocked(ch.pull, nil, nil)
				p.mu.Unlock()
			}
			continue
		}
		switch {
		case c.finished.Load():
		case terminated:
			c.cancel(ErrTerminated)
		case ch == timedOut:
			for i := ch.lo; i < ch.hi; i++ {
				c.item(i, &TaskError{Func: c.e.name, Index: i, Pid: id.Pid, Node: id.Node, Err: ErrTaskTimeout})
			}
		case planned || ch.job != taken || timedOut != nil:
			// Never started (or stopped by a planned exit, or queued behind
			// a timed-out task): run it elsewhere, free of charge.
			p.requeue(ch)
		case c.e.idempotent && ch.attempts < c.cfg.retries:
			ch.attempts++
			p.requeue(ch)
		default:
			we := newWorkerError(id, werr)
			we.Func, we.Index = c.e.name, ch.lo
			if !ch.started.IsZero() {
				we.After = time.Since(ch.started)
			}
			for i := ch.lo; i < ch.hi; i++ {
				e := *we
				e.Index = i
				c.item(i, &e)
			}
		}
	}
}

// noteTime keeps t if it is among the slowest task messages; p.mu held.
// The worker measured it (the message's busy time): no clock read here.
func (w *slot) noteTime(t TaskTime) {
	if len(w.slowest) == slowest && t.Took <= w.slowest[slowest-1].Took {
		return
	}
	i, _ := slices.BinarySearchFunc(w.slowest, t.Took, func(x TaskTime, d time.Duration) int {
		return cmp.Compare(d, x.Took) // slowest first
	})
	w.slowest = slices.Insert(w.slowest, i, t)
	if len(w.slowest) > slowest {
		w.slowest = w.slowest[:slowest]
	}
}

// startHeadLocked starts the clock of the chunk now first in flight, if it
// has none yet: the worker runs it from now on, and its task timeout
// counts from here (see watchTimeouts). Whatever removes w's running chunk
// calls it. p.mu is held.
func (w *slot) startHeadLocked() {
	if len(w.inflight) > 0 && w.inflight[0].started.IsZero() {
		w.inflight[0].started = time.Now()
	}
}

func (w *slot) kickSelf() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}
