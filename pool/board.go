package pool

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mproc/mproc/shm"
)

// The pull path. A Map (MapAsync, an Imap batch) of several items is
// published once into a board: a shared segment holding the call's encoded
// arguments and a claim counter. Each worker gets one small kindPull
// message naming the board, then claims ranges of items itself (a CAS on
// the counter, guided sizes: what is left over twice the workers, so the
// tail stays balanced) until none are left. Any worker can take any item:
// a worker that shares its CPU with a busy sibling, or starts late, strands
// nothing. Results go back through each worker's result ring without waking
// the parent (sendQuiet); the participants count themselves out on the
// board after their flagDone, and the last one wakes the parent, once.
// While it participates the parent's collector sleeps instead of polling,
// so the parent costs the workers no CPU. A call starts on one worker per
// CPU; workers pinned to a CPU already taken join after recruitAfter, if
// items are left (see onePerCPULocked).
//
// Death safety. A worker records its claim in its link's control page
// before running any item of it, and the item it begins before running it
// (linkControl.claim*). The parent never tracks claims itself: once every
// participant has either sent flagDone or died, an item without a result
// is re-run, as a pushed chunk. If a dead worker's record says the item
// may have run (claimLo..claimCur), it is charged an attempt (Retries,
// Idempotent) or fails with a *WorkerError, exactly as a pushed chunk;
// otherwise it never began and re-runs free. A delivered bitmap makes each
// result count once whatever a worker sends. A call that finishes early
// closes its board so that workers stop claiming.
//
// Push stays for what it serves: Apply and single items, calls with a task
// timeout, pools with MaxTasksPerWorker, backends without shared memory,
// and calls too large for a board (their chunks are cut by bytes anyway).

// Board geometry. A board is reused call after call; a pool keeps at most
// maxBoards (Imap keeps several batches in flight), made when first needed.
const (
	boardSize  = 2 << 20
	boardMagic = 0x44524f42 // "BORD"
	maxBoards  = 4
	noItem     = ^uint64(0)
)

// boardHeader is the first page of a board. Line 0 is written by the
// parent before it publishes a call, line 2 by the parent to close it;
// line 1 is the workers': the claim counter, and how many participants
// are still at work.
type boardHeader struct {
	magic  atomic.Uint32
	stride atomic.Uint32 // > 0: the items are raw, stride bytes each (see boardData)
	gen    atomic.Uint64 // the call's job: a pull message names it
	items  atomic.Uint64
	_      [40]byte

	next atomic.Uint64 // the first item nobody has claimed
	// working counts the participants that have not yet committed their
	// flagDone message. Each commits it quietly, then decrements; the one
	// that brings it to zero wakes the parent, whose collector then wakes
	// the other collectors in-process: one cross-process wake per call.
	working atomic.Int64
	_       [48]byte

	closed atomic.Uint32
	_      [60]byte
}

// Board layout after the header page: ends, one u32 per item (the offset in
// the data area just past the item), then the data area, which holds the
// items back to back as a task message does (len u32 | bytes), so that a
// claimed range is handed to runItems as it lies. Fixed-size raw arguments
// (encoded.stride) skip the framing: the data area holds them as the
// caller's slice did, item i at i*stride, published in one copy, and the
// ends table is left unused.
func boardData(n int) int { return pageSize + (4*n+63)&^63 }

// board is the parent's end of one board segment.
type board struct {
	seg *shm.Segment
	hdr *boardHeader
}

func newBoard() (*board, error) {
	seg, err := shm.New("pool-board", boardSize)
	if err != nil {
		return nil, fmt.Errorf("pull board: %w", err)
	}
	b := &board{seg: seg, hdr: boardView(seg.Bytes())}
	b.hdr.magic.Store(boardMagic)
	return b, nil
}

// boardFits reports whether args fit in a board.
func boardFits(args *encoded) bool {
	n := args.len()
	framing := 4 * n
	if args.stride > 0 {
		framing = 0
	}
	return n <= maxBoardItems && boardData(n)+len(args.buf)+framing <= boardSize
}

// maxBoardItems bounds a board's item count so that every offset fits a u32
// and a claim never needs more than the table holds.
const maxBoardItems = 1 << 20

// publish writes the items of args into the board for the call job. No
// worker reads the board while it is free, so plain stores are safe; the
// ring that carries the pull message orders them before the workers' reads.
func (b *board) publish(job uint64, args *encoded, workers int) {
	mem := b.seg.Bytes()
	n := args.len()
	data := mem[boardData(n):]
	if args.stride > 0 {
		copy(data, args.buf)
	} else {
		off := 0
		for i := range n {
			item := args.item(i)
			binary.LittleEndian.PutUint32(data[off:], uint32(len(item)))
			off += 4 + copy(data[off+4:], item)
			binary.LittleEndian.PutUint32(mem[pageSize+4*i:], uint32(off))
		}
	}
	b.hdr.stride.Store(uint32(args.stride))
	b.hdr.closed.Store(0)
	b.hdr.next.Store(0)
	b.hdr.working.Store(int64(workers))
	b.hdr.items.Store(uint64(n))
	b.hdr.gen.Store(job)
}

func (b *board) close() error { return b.seg.Close() }

// claimRecord is a worker's claim as its control page tells it.
type claimRecord struct{ job, lo, hi, cur uint64 }

// pulled is one call published on a board, with its participants: the
// slots sent (or about to be sent) its pull message. Guarded by p.mu
// except delivered, which collectors set with atomic ORs.
type pulled struct {
	c       *call
	b       *board
	job     uint64
	n       int
	workers int
	active  int // participants that have not yet sent flagDone or died
	// wokeAll says the participants' collectors were rung once every
	// flagDone was committed (see participantDoneLocked).
	wokeAll   bool
	delivered []atomic.Uint64
	// mayHaveRun marks items a dead participant's record says it began:
	// a re-run is charged an attempt. dead holds those workers' errors.
	mayHaveRun map[int]*WorkerError
}

// markDelivered marks items lo..hi-1, all in one 64-item word of the
// bitmap, delivered, and returns the bits (item i at bit i%64) of those
// that were not yet: one atomic OR for up to 64 results.
func (pl *pulled) markDelivered(lo, hi int) uint64 {
	mask := ^uint64(0) >> (64 - (hi - lo)) << (lo % 64)
	return mask &^ pl.delivered[lo/64].Or(mask)
}

func (pl *pulled) isDelivered(i int) bool {
	return pl.delivered[i/64].Load()&(uint64(1)<<(i%64)) != 0
}

// tryPull publishes c on a free board and queues its pull message for every
// live slot; it reports false, changing nothing, when c should be pushed.
// p.mu is held.
func (p *core) tryPullLocked(c *call) bool {
	if c.n < 2 || c.cfg.timeout > 0 || p.cfg.MaxTasksPerWorker > 0 || !boardFits(c.args) {
		return false
	}
	var ws []*slot
	for _, w := range p.slots {
		if p.canPullLocked(w) {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return false
	}
	ws, later := p.onePerCPULocked(ws)
	var b *board
	if k := len(p.freeBoards); k > 0 {
		b = p.freeBoards[k-1]
		p.freeBoards = p.freeBoards[:k-1]
	} else if len(p.allBoards) < maxBoards {
		nb, err := newBoard()
		if err != nil {
			return false // push still works
		}
		b = nb
		p.allBoards = append(p.allBoards, b)
	} else {
		return false
	}
	p.nextJob++
	// Claims are sized for every worker that may join (see recruit).
	pl := &pulled{c: c, b: b, job: p.nextJob, n: c.n, workers: len(ws) + len(later), active: len(ws),
		delivered: make([]atomic.Uint64, (c.n+63)/64)}
	b.publish(pl.job, c.args, len(ws))
	for _, w := range ws {
		w.pullQ = append(w.pullQ, &chunk{c: c, args: c.args, lo: 0, hi: c.n, job: pl.job, pull: pl})
	}
	if len(later) > 0 {
		time.AfterFunc(recruitAfter, func() { p.recruit(pl, later) })
	}
	return true
}

func (p *core) canPullLocked(w *slot) bool {
	_, ok := w.l.(*shmLink)
	return ok && w.state == slotLive && !w.retiring && w.timedOut == nil && !w.stopSent
}

// recruitAfter is how long a pulled call runs on one worker per CPU
// before the pool's other workers join it.
const recruitAfter = 2 * time.Millisecond

// onePerCPULocked splits ws, idle workers first, into one worker per CPU
// (every unpinned one) and the rest. Workers pinned to one CPU would
// share it: each woken for a short CPU-bound call only adds a wake-up, and
// one preempted while it holds a claim holds back the call's end. The
// rest join after recruitAfter (see recruit), for calls long enough, or
// whose tasks wait rather than compute, to use them.
func (p *core) onePerCPULocked(ws []*slot) (now, later []*slot) {
	idle := func(w *slot) bool { return len(w.inflight) == 0 && len(w.pullQ) == 0 }
	taken := make(map[int]bool, len(ws))
	for _, pass := range []bool{true, false} {
		for _, w := range ws {
			if idle(w) != pass {
				continue
			}
			cpu := -1
			if w.idx < len(p.place) {
				cpu = p.place[w.idx].CPU
			}
			if cpu < 0 || !taken[cpu] {
				taken[cpu] = cpu >= 0
				now = append(now, w)
			} else {
				later = append(later, w)
			}
		}
	}
	return now, later
}

// recruit has the workers in ws join pl if it still has items nobody has
// claimed: each counts in, as a participant, before its pull message goes.
func (p *core) recruit(pl *pulled, ws []*slot) {
	p.mu.Lock()
	c := pl.c // a ghost once the call finished early (see abortCall)
	p.mu.Unlock()
	c.mu.Lock()
	args := c.args // nil once the call finished
	c.mu.Unlock()
	p.mu.Lock()
	var kick []*slot
	// allBoards still holding pl's board means it is still mapped: the
	// pool releases boards only after emptying allBoards (stopWatchers).
	if args != nil && pl.c == c && pl.b != nil && slices.Contains(p.allBoards, pl.b) &&
		pl.b.hdr.closed.Load() == 0 && pl.b.hdr.next.Load() < uint64(pl.n) {
		for _, w := range ws {
			if !p.canPullLocked(w) {
				continue
			}
			pl.active++
			pl.b.hdr.working.Add(1)
			w.pullQ = append(w.pullQ, &chunk{c: c, args: args, lo: 0, hi: pl.n, job: pl.job, pull: pl})
			kick = append(kick, w)
		}
	}
	p.mu.Unlock()
	for _, w := range kick {
		w.kickSelf()
	}
}

// pullEndedLocked records that one participant of pl ended without
// sending flagDone: its pull message was dropped, or it died (with its
// claim record rec, if it had one). See participantDoneLocked for what it
// returns. p.mu is held.
func (p *core) pullEndedLocked(pl *pulled, rec *claimRecord, we *WorkerError) (recover bool) {
	if rec != nil && rec.job == pl.job && rec.cur != noItem {
		hi := min(rec.cur, uint64(pl.n-1))
		for i := rec.lo; i <= hi && i < uint64(pl.n); i++ {
			if !pl.isDelivered(int(i)) {
				if pl.mayHaveRun == nil {
					pl.mayHaveRun = make(map[int]*WorkerError)
				}
				pl.mayHaveRun[int(i)] = we
			}
		}
	}
	// It will not count itself out of the board's working count: count it
	// out, so that the last worker still at work wakes the parent. (One
	// that died between committing flagDone and counting itself out
	// leaves the count high: the parent then finds the last flagDone at
	// its collector's next park slice, late but not lost.)
	if pl.b != nil {
		pl.b.hdr.working.Add(-1)
	}
	return p.participantDoneLocked(pl)
}

// participantDoneLocked records that one participant of pl is done with
// it. Once none is left the board is free again, and recover reports
// whether items are left without a result. p.mu is held.
func (p *core) participantDoneLocked(pl *pulled) (recover bool) {
	pl.active--
	if pl.active > 0 {
		// The others may have sent flagDone quietly (see working): once
		// every participant has committed its flagDone (working reached
		// zero), their collectors look now, not at the end of a park slice.
		// Once per call: ringing them at every participant's end cost a
		// call of N participants N² rings. Before that, the last one to
		// count itself out rings its own collector, which gets here.
		// Only slots pl was sent to can hold one.
		if pl.wokeAll || pl.b.hdr.working.Load() > 0 {
			return false
		}
		pl.wokeAll = true
		for _, w := range p.slots {
			sl, ok := w.l.(*shmLink)
			if ok && sl.bell != nil && slices.ContainsFunc(w.inflight, func(ch *chunk) bool { return ch.pull == pl }) {
				sl.wakeCollector()
			}
		}
		return false
	}
	pl.b.hdr.closed.Store(1)
	p.freeBoards = append(p.freeBoards, pl.b)
	pl.b = nil
	return !pl.c.finished.Load()
}

// recoverPull runs once every participant of pl ended with items of a
// live call still without a result: each one that may have run is charged
// an attempt as a pushed chunk would be, the rest run again free.
func (p *core) recoverPull(pl *pulled) {
	c := pl.c
	c.mu.Lock()
	args := c.args
	c.mu.Unlock()
	if args == nil {
		return // finished meanwhile
	}
	for lo := 0; lo < pl.n; {
		if pl.isDelivered(lo) {
			lo++
			continue
		}
		if we, ran := pl.mayHaveRun[lo]; ran {
			if c.e.idempotent && c.cfg.retries > 0 {
				p.requeue(&chunk{c: c, args: args, lo: lo, hi: lo + 1, attempts: 1})
			} else {
				e := *we
				e.Func, e.Index = c.e.name, lo
				c.item(lo, &e)
			}
			lo++
			continue
		}
		hi := lo + 1
		for hi < pl.n && hi-lo < recoverChunk && !pl.isDelivered(hi) && pl.mayHaveRun[hi] == nil {
			hi++
		}
		p.requeue(&chunk{c: c, args: args, lo: lo, hi: hi})
		lo = hi
	}
}

// loudClaim is the claim size from which a worker wakes the parent with
// its results rather than sending them quietly.
const loudClaim = 256

// recoverChunk bounds the pushed chunks that re-run a pulled call's lost
// items: a pushed chunk whose worker dies is charged whole, so small ones
// keep a second death from costing many items an attempt.
const recoverChunk = 64

// encodePull appends the pull message of pl for one worker.
func encodePull(dst []byte, pl *pulled, e *entry, flags uint8) []byte {
	dst = appendHeader(dst, msgHeader{kind: kindPull, flags: flags, job: pl.job, extra: e.sig})
	dst = appendName(dst, e.name)
	dst = binary.LittleEndian.AppendUint64(dst, pl.b.seg.ID())
	dst = binary.LittleEndian.AppendUint32(dst, uint32(pl.n))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(min(pl.workers, 1<<16-1)))
	return binary.LittleEndian.AppendUint32(dst, uint32(min(pl.c.cfg.chunk, maxChunk)))
}

// pullSpec is a pull message's body after the function name.
type pullSpec struct {
	board   uint64
	n       int
	workers int
	chunk   int
}

func parsePullSpec(b []byte) (pullSpec, error) {
	if len(b) != 18 {
		return pullSpec{}, errShortMsg
	}
	return pullSpec{
		board:   binary.LittleEndian.Uint64(b),
		n:       int(binary.LittleEndian.Uint32(b[8:])),
		workers: max(1, int(binary.LittleEndian.Uint16(b[12:]))),
		chunk:   int(binary.LittleEndian.Uint32(b[14:])),
	}, nil
}

// workerBoard is a worker's view of a board for one pull message. It reads
// every offset as hostile: a bad one ends the pull with errBrokenPeer.
type workerBoard struct {
	hdr    *boardHeader
	mem    []byte
	data   []byte
	n      int
	stride int // > 0: raw items, no framing (see boardData)
}

func openWorkerBoard(spec pullSpec, job uint64) (*workerBoard, error) {
	seg, err := shm.Lookup(spec.board)
	if err != nil {
		return nil, fmt.Errorf("pull board: %w", err)
	}
	mem := seg.Bytes()
	if len(mem) < boardSize || spec.n <= 0 || spec.n > maxBoardItems || boardData(spec.n) >= len(mem) {
		return nil, fmt.Errorf("%w: a pull board of %d bytes for %d items", errBrokenPeer, len(mem), spec.n)
	}
	hdr := boardView(mem)
	if hdr.magic.Load() != boardMagic || hdr.gen.Load() != job || hdr.items.Load() != uint64(spec.n) {
		return nil, fmt.Errorf("%w: the pull board does not hold job %d", errBrokenPeer, job)
	}
	data := mem[boardData(spec.n):]
	stride := int(hdr.stride.Load())
	if stride > maxValue || stride*spec.n > len(data) {
		return nil, fmt.Errorf("%w: a pull board of %d items of %d bytes in %d bytes", errBrokenPeer, spec.n, stride, len(data))
	}
	return &workerBoard{hdr: hdr, mem: mem, data: data, n: spec.n, stride: stride}, nil
}

// end returns the data offset just past item i; -1 before item 0.
func (b *workerBoard) end(i int) int {
	switch {
	case i < 0:
		return 0
	case b.stride > 0:
		return (i + 1) * b.stride
	}
	return int(binary.LittleEndian.Uint32(b.mem[pageSize+4*i:]))
}

// items returns the task-message body of items lo..hi-1.
func (b *workerBoard) items(lo, hi int) ([]byte, error) {
	start, stop := b.end(lo-1), b.end(hi-1)
	if start > stop || stop > len(b.data) {
		return nil, fmt.Errorf("%w: pull board items %d..%d at bytes %d..%d", errBrokenPeer, lo, hi, start, stop)
	}
	return b.data[start:stop], nil
}

// claim takes the next range of items: chunk items if set, else guided
// (what is left over twice the workers), cut so its arguments stay under
// softMessage. ok is false once none are left or the board is closed.
func (b *workerBoard) claim(workers, chunk int) (lo, hi int, ok bool) {
	for {
		if b.hdr.closed.Load() != 0 {
			return 0, 0, false
		}
		next := b.hdr.next.Load()
		if next >= uint64(b.n) {
			return 0, 0, false
		}
		lo = int(next)
		k := chunk
		if k <= 0 {
			k = (b.n - lo) / (2 * workers)
		}
		k = max(1, min(k, maxChunk, b.n-lo))
		for k > 1 && b.end(lo+k-1)-b.end(lo-1) > softMessage {
			k = max(1, k/2)
		}
		if b.hdr.next.CompareAndSwap(next, next+uint64(k)) {
			return lo, lo + k, true
		}
	}
}

// pull runs a kindPull message: claim ranges, run them, send their results
// quietly, and end with a flagDone message that wakes the parent.
func (r *runner) pull(ctx context.Context, h msgHeader, body []byte, sl *shmLink) (retire bool, err error) {
	name, rest, err := parseName(body)
	if err != nil {
		return false, err
	}
	spec, err := parsePullSpec(rest)
	if err != nil {
		return false, err
	}
	r.l.begin(h.job)
	ctl := sl.ctl
	ctl.claimCur.Store(noItem)
	ctl.claimJob.Store(h.job)
	fn := lookupTask(name, h.extra)
	flags := uint8(flagPulled | flagDone)
	b, err := openWorkerBoard(spec, h.job)
	if err != nil {
		return false, err
	}
	begun := func(i int) { ctl.claimCur.Store(uint64(i)) }
	for !retire {
		lo, hi, ok := b.claim(spec.workers, spec.chunk)
		if !ok {
			break
		}
		ctl.claimCur.Store(noItem)
		ctl.claimLo.Store(uint64(lo))
		ctl.claimHi.Store(uint64(hi))
		items, err := b.items(lo, hi)
		if err != nil {
			return false, err
		}
		// A large claim's results are worth a wake-up: the parent decodes
		// them while this worker runs on, instead of all at the end; so
		// are the results of a call whose caller consumes them as they
		// come.
		send := sl.sendQuiet
		if hi-lo >= loudClaim || h.flags&flagStream != 0 {
			send = sl.send
		}
		ih := msgHeader{kind: kindTask, flags: h.flags, count: hi - lo, first: lo, job: h.job}
		var out []byte
		var runFlags uint8
		out, retire, runFlags, err = runItems(r.out[:0], ih, fn, items, b.stride, &r.budget, r.l.aborted, begun, func(msg []byte) error {
			msg[1] |= flagPulled
			return send(ctx, msg)
		})
		if err != nil {
			return retire, err
		}
		out[1] |= flagPulled
		r.out = out
		if err := send(ctx, out); err != nil {
			return retire, err
		}
		if runFlags&flagAborted != 0 {
			break // fail-fast or the parent's abort: take no more
		}
	}
	if cap(r.out) > 2*softMessage {
		r.out = nil
	}
	if retire {
		flags |= flagRetire
	}
	done := appendHeader(r.out[:0], msgHeader{kind: kindResult, flags: flags, job: h.job})
	// Commit first, then count: whoever sees zero knows every other
	// participant's flagDone is already in its ring.
	if err := sl.sendQuiet(ctx, done); err != nil {
		return retire, err
	}
	if b.hdr.working.Add(-1) <= 0 {
		sl.wakeParked()
	}
	return retire, nil
}

// okRun counts the results at the start of body, at most max, that
// succeeded with a value of size bytes and are fresh (bit k of fresh set
// for the k-th). body is well-formed (see wellFormed).
func okRun(body []byte, max, size int, fresh uint64) int {
	step := 5 + size
	k := 0
	for k < max && fresh&(1<<k) != 0 && len(body) >= (k+1)*step &&
		body[k*step] == stOK && binary.LittleEndian.Uint32(body[k*step+1:]) == uint32(size) {
		k++
	}
	return k
}

// collectPulled takes one result message of a pulled call; false means a
// broken peer (a pulled result for no call it takes part in, a bad item).
func (w *slot) collectPulled(l link, h msgHeader, body []byte) bool {
	p := w.p
	p.mu.Lock()
	var ch *chunk
	for _, x := range w.inflight {
		if x.job == h.job && x.pull != nil {
			ch = x
			break
		}
	}
	if ch == nil {
		p.mu.Unlock()
		return false
	}
	pl, c := ch.pull, ch.c
	if ch.started.IsZero() {
		ch.started = time.Now()
	}
	if h.flags&flagRetire != 0 {
		w.retiring = true
	}
	if h.count > 0 {
		w.noteTime(TaskTime{Func: c.e.name, Index: h.first, Tasks: h.count, Took: time.Duration(h.extra)})
	}
	id := w.id
	p.mu.Unlock()
	w.tasks.Add(int64(h.count))
	w.busy.Add(int64(h.extra))
	if h.first+h.count > pl.n {
		return false
	}
	// Check the whole message first: an item is marked delivered only if
	// it is then delivered, or a malformed tail would lose it.
	if !wellFormed(body, h.count) {
		return false
	}
	t := tally{c: c}
	// Results of a raw type go in runs: one call stores every fresh
	// success of a bitmap word, without a decode call per item.
	runs := c.decRun != nil && c.each == nil && c.cfg.progress == nil
	step := 5 + c.resultSize // status, length, value
	end := h.first + h.count
	word := -1
	var fresh uint64 // of the current bitmap word: items not delivered before
	for i := h.first; i < end; {
		if i/64 != word {
			word = i / 64
			fresh = pl.markDelivered(i, min(end, (word+1)*64))
		}
		if runs && !c.finished.Load() {
			k := okRun(body, min(end, (word+1)*64)-i, c.resultSize, fresh>>(i%64))
			if k > 0 {
				k = c.decRun(i, k, body[5:], step)
				t.addOK(k)
				i += k
				body = body[k*step:]
				if i/64 != word || i == end {
					continue
				}
			}
		}
		st := body[0]
		item, tail, _ := nextItem(body[1:])
		body = tail
		if fresh&(1<<(i%64)) != 0 && !c.finished.Load() {
			t.add(i, outcome(c, i, st, item, id, false))
		}
		i++
	}
	t.flush()
	if h.flags&flagDone == 0 {
		return true
	}
	p.mu.Lock()
	if i := slices.Index(w.inflight, ch); i >= 0 {
		w.inflight = slices.Delete(w.inflight, i, i+1)
		w.startHeadLocked()
	}
	lost := p.participantDoneLocked(pl)
	pulling := slices.ContainsFunc(w.inflight, func(x *chunk) bool { return x.pull != nil })
	p.mu.Unlock()
	if sl, ok := l.(*shmLink); ok && !pulling {
		sl.setCollectSpin(true)
	}
	if lost {
		p.recoverPull(pl)
	}
	if p.moreToSend() {
		w.kickSelf()
	}
	runtime.Gosched() // let the caller this readied run first (see collect)
	return true
}
