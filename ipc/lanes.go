package ipc

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

const (
	queueMagic   = 0x55514d50 // "PMQU"
	queueVersion = 3          // 2: the consumer word; 3: one-word event counts, lane counts

	defaultLanes = 8
	maxLanes     = 1024
)

// queueLayout heads a lanes area: geometry written once and the consumer
// word, then the event count the consumer sleeps on (producers bump it), on
// its own line.
type queueLayout struct {
	magic      atomic.Uint32 // stored last by newLanes
	version    atomic.Uint32
	lanes      atomic.Uint32
	laneStride atomic.Uint32 // bytes from one lane's owner line to the next
	closed     atomic.Uint32
	_          [4]byte
	// consumer is the consuming process as a packed peerID (peerID.word),
	// 0 if unknown: the creator, then whichever process last called Get or
	// TryGet. Producers watch it while their lane is full.
	consumer atomic.Uint64
	_        [lineSize - 32]byte

	ev eventWords
	_  [lineSize - 8]byte
}

// laneLayout is one lane's bookkeeping, two lines: the owner word and the
// producer's message count, then the consumer's count. The lane's Ring
// follows it.
type laneLayout struct {
	owner atomic.Uint32 // pid of the producing process, 0 when free
	_     [4]byte
	puts  atomic.Uint64 // messages ever committed; stored by the producer after each commit
	_     [lineSize - 16]byte
	gets  atomic.Uint64 // messages ever taken; stored by the consumer after each take
	_     [lineSize - 8]byte
}

const laneHeaderSize = 2 * lineSize

const queueHeaderSize = 2 * lineSize

// lanes is a many-producer, single-consumer queue of byte messages: one SPSC
// Ring per producer process. A producer claims a free lane by CAS of its pid
// into the lane's owner word, so no producer ever writes where another may;
// a producer killed at any instruction leaves its lane holding only whole
// messages, which the consumer still delivers, and its lane can be reclaimed
// once its pid is dead. Callers serialise producers of one process and the
// consumer (Queue does, with mutexes).
type lanes struct {
	l      *queueLayout
	owners []*laneLayout
	rings  []*Ring
	mine   int // lane this process produces into; -1 before the first put
	next   int // consumer's round-robin start
	// aside marks the lanes this consumer found corrupt: reported once,
	// never read again (consumer side).
	aside []bool
	spin  time.Duration

	// quit is set when this process lets the queue's memory go (Detach):
	// blocked calls return errDetached instead of touching it again.
	quit atomic.Bool

	// consumer word last made the peer of this process's lane's ring
	// (producer side).
	peerWord uint64
}

func lanesSize(n int, cfg *RingConfig) int {
	rs := RingSize(cfg)
	if rs < 0 || n <= 0 || n > maxLanes {
		return -1
	}
	return queueHeaderSize + n*(laneHeaderSize+rs)
}

func newLanes(mem []byte, n int, cfg *RingConfig) (*lanes, error) {
	size := lanesSize(n, cfg)
	if size < 0 || len(mem) < size {
		return nil, ErrLayout
	}
	l := view[queueLayout](mem)
	if l == nil {
		return nil, ErrLayout
	}
	l.magic.Store(0)
	stride := laneHeaderSize + RingSize(cfg)
	for i := range n {
		lane := mem[queueHeaderSize+i*stride:]
		ll := view[laneLayout](lane)
		ll.owner.Store(0)
		ll.puts.Store(0)
		ll.gets.Store(0)
		if _, err := NewRing(lane[laneHeaderSize:stride], cfg); err != nil {
			return nil, err
		}
	}
	l.version.Store(queueVersion)
	l.lanes.Store(uint32(n))
	l.laneStride.Store(uint32(stride))
	l.closed.Store(0)
	l.consumer.Store(selfWord()) // the creator consumes until another process does
	l.ev.reset()
	l.magic.Store(queueMagic)
	return attachLanes(mem)
}

// attachLanes validates the header and every lane's ring as hostile input.
func attachLanes(mem []byte) (*lanes, error) {
	l := view[queueLayout](mem)
	if l == nil {
		return nil, ErrLayout
	}
	if l.magic.Load() != queueMagic || l.version.Load() != queueVersion {
		return nil, ErrCorrupt
	}
	n, stride := int(l.lanes.Load()), int(l.laneStride.Load())
	if n <= 0 || n > maxLanes || stride < laneHeaderSize+ringHeaderSize || stride%lineSize != 0 {
		return nil, ErrCorrupt
	}
	if len(mem) < queueHeaderSize+n*stride {
		return nil, ErrLayout
	}
	q := &lanes{l: l, mine: -1, spin: defaultSpin, aside: make([]bool, n)}
	for i := range n {
		lane := mem[queueHeaderSize+i*stride : queueHeaderSize+(i+1)*stride]
		r, err := AttachRing(lane[laneHeaderSize:])
		if err != nil {
			return nil, err
		}
		q.owners = append(q.owners, view[laneLayout](lane))
		q.rings = append(q.rings, r)
	}
	return q, nil
}

// claim finds this process a lane: a free one, else one whose owner died.
func (q *lanes) claim() error {
	pid := uint32(os.Getpid())
	for i, o := range q.owners {
		if o.owner.Load() == pid || o.owner.CompareAndSwap(0, pid) {
			q.mine = i
			return nil
		}
	}
	for i, o := range q.owners {
		old := o.owner.Load()
		if old != 0 && !processAlive(int(old)) && o.owner.CompareAndSwap(old, pid) {
			// The dead owner's committed messages stay in the ring ahead of
			// ours; whatever it half-wrote past the tail is overwritten.
			q.mine = i
			return nil
		}
	}
	return ErrNoLane
}

// release gives this process's lane back; messages in it are still delivered.
func (q *lanes) release() {
	if q.mine >= 0 {
		q.owners[q.mine].owner.CompareAndSwap(uint32(os.Getpid()), 0)
		q.mine = -1
	}
}

func (q *lanes) put(ctx context.Context, msg []byte, block bool) error {
	if q.mine < 0 {
		if err := q.claim(); err != nil {
			return err
		}
	}
	r := q.rings[q.mine]
	// Name the consuming process as the lane's peer, so that a Put blocked
	// on a full lane returns ErrPeerDied once nobody can drain it. The word
	// is hostile input like the rest: garbage names a dead process at worst.
	if w := q.l.consumer.Load(); w != q.peerWord {
		q.peerWord = w
		r.peer.setID(peerFromWord(w))
	}
	var err error
	if block {
		err = r.putWait(ctx, msg, &q.quit)
	} else {
		err = r.TryPut(msg)
	}
	if err == nil {
		q.owners[q.mine].puts.Add(1)
		q.l.ev.notify()
	}
	return err
}

// consume makes this process the queue's consumer, the process producers
// blocked on a full lane watch: one load when it already is.
func (q *lanes) consume() {
	if w := selfWord(); q.l.consumer.Load() != w {
		q.l.consumer.Store(w)
	}
}

// tryGet takes one message from the first non-empty lane after the last one
// served (round-robin, so one busy producer cannot starve the others). A
// lane whose ring turns out corrupt is reported once and set aside: its
// producer alone wrote it, so the other lanes are still sound.
func (q *lanes) tryGet(dst []byte) ([]byte, error) {
	closed := q.l.closed.Load() != 0
	n := len(q.rings)
	for k := range n {
		i := (q.next + k) % n
		if q.aside[i] {
			continue
		}
		out, st := q.rings[i].get(dst)
		switch st {
		case opDone:
			q.owners[i].gets.Add(1)
			q.next = i + 1
			return out, nil
		case opCorrupt:
			q.aside[i] = true
			q.next = i + 1
			return dst, q.corruptLane(i)
		}
	}
	if closed {
		return dst, os.ErrClosed
	}
	return dst, ErrEmpty
}

// len counts the messages committed and not yet taken, lane by lane. The
// counts are hostile input like everything shared: a lane is clamped to
// what its ring can hold, and a count that reads as negative (the consumer
// counted a take before the producer counted the commit) as zero.
func (q *lanes) len() int {
	n := 0
	for i, o := range q.owners {
		gets := o.gets.Load() // first: gets never passes puts for long
		puts := o.puts.Load()
		if puts > gets {
			n += int(min(puts-gets, q.rings[i].capacity/recHdr))
		}
	}
	return n
}

// corruptLane describes lane i, just set aside.
func (q *lanes) corruptLane(i int) error {
	const what = "this consumer no longer reads it and keeps serving the other lanes; its producer must start over on a new queue"
	if pid := q.owners[i].owner.Load(); pid != 0 {
		return fmt.Errorf("queue lane %d (producer pid %d): %w: %s", i, pid, ErrCorrupt, what)
	}
	return fmt.Errorf("queue lane %d (no producer): %w: %s", i, ErrCorrupt, what)
}

// get blocks until a message arrives in any lane, the queue is closed and
// drained, quit is set, or ctx is done.
func (q *lanes) get(ctx context.Context, dst []byte) ([]byte, error) {
	var out []byte
	var err error
	ready := func() bool {
		if q.quit.Load() {
			out, err = dst, errDetached
			return true
		}
		out, err = q.tryGet(dst)
		return err != ErrEmpty
	}
	if ready() {
		return out, err
	}
	if werr := await(ctx, &q.l.ev, q.spin, nil, ready, nil); werr != nil {
		return dst, werr
	}
	return out, err
}

// close marks the queue and every lane closed and wakes everyone.
func (q *lanes) close() {
	q.l.closed.Store(1)
	for _, r := range q.rings {
		r.Close()
	}
	q.l.ev.wakeAll()
}
