package ipc

import (
	"context"
	"encoding/binary"
	"math/bits"
	"os"
	"sync/atomic"
	"time"
)

const (
	ringMagic   = 0x474e5252 // "RRNG" little-endian
	ringVersion = 2          // 2: one-word event counts whose wakes clear the waiter count

	// recHdr is the size of the record header that precedes every record:
	// a little-endian uint32 length and a uint32 kind. Records start on
	// 8-byte boundaries, so a header never straddles the end of the ring.
	recHdr = 8
	recMsg = 1 // a message of length bytes follows
	recPad = 2 // skip to the start of the ring (the record did not fit before the end)

	minRingCapacity     = 256
	maxRingCapacity     = 1 << 30
	defaultRingCapacity = 256 << 10
)

// ringLayout is the shared part of a Ring: three cache lines followed by the
// data area. Line 0 is written once by NewRing (plus the closed flag); line 1
// is written by the producer (tail) and line 2 by the consumer (head), so the
// two sides never store to the same line on the fast path. Each side's line
// also holds the event count its peer sleeps on, which that side bumps.
type ringLayout struct {
	magic    atomic.Uint32 // stored last by NewRing
	version  atomic.Uint32
	capacity atomic.Uint32 // data bytes, a power of two
	mask     atomic.Uint32 // capacity-1
	maxMsg   atomic.Uint32
	closed   atomic.Uint32
	_        [lineSize - 6*4]byte

	tail atomic.Uint64 // bytes ever committed by the producer; stored last in a Put
	data eventWords    // consumer sleeps here while empty
	_    [lineSize - 16]byte

	head  atomic.Uint64 // bytes ever consumed; stored last in a Get
	space eventWords    // producer sleeps here while full
	_     [lineSize - 16]byte
}

const ringHeaderSize = 3 * lineSize

// RingConfig sets the geometry of a new Ring. A nil *RingConfig means all
// defaults.
type RingConfig struct {
	// Capacity is the size of the data area in bytes, rounded up to a power
	// of two, at least 256 and at most 1 GiB. Zero means 256 KiB. Each
	// message occupies 8 bytes of header plus its length rounded up to 8.
	Capacity int

	// MaxMessage is the longest message accepted; longer ones fail with
	// ErrTooLarge. Zero means Capacity/4. At most Capacity/2-8, which
	// guarantees an empty ring always accepts a maximal message.
	MaxMessage int
}

func (c *RingConfig) resolve() (capacity, maxMsg int, err error) {
	var cfg RingConfig
	if c != nil {
		cfg = *c
	}
	capacity = cfg.Capacity
	if capacity == 0 {
		capacity = defaultRingCapacity
	}
	if capacity < 0 || capacity > maxRingCapacity {
		return 0, 0, ErrLayout
	}
	capacity = max(capacity, minRingCapacity)
	capacity = 1 << bits.Len(uint(capacity-1))
	maxMsg = cfg.MaxMessage
	if maxMsg == 0 {
		maxMsg = capacity / 4
	}
	if maxMsg < 0 || maxMsg > capacity/2-recHdr {
		return 0, 0, ErrLayout
	}
	return capacity, maxMsg, nil
}

// RingSize returns how many bytes of shared memory NewRing needs for cfg
// (nil for defaults): a 192-byte header plus the data area. It is a multiple
// of 64, so rings can be laid out back to back. It returns -1 for an invalid
// configuration.
func RingSize(cfg *RingConfig) int {
	capacity, _, err := cfg.resolve()
	if err != nil {
		return -1
	}
	return ringHeaderSize + capacity
}

// Ring is a bounded single-producer, single-consumer queue of variable-length
// byte messages in shared memory. One process (or goroutine) puts, one gets;
// each has its own view (NewRing on one side, AttachRing on the other, or one
// view used by two goroutines of one process).
//
// A message is copied into the ring as a record and becomes visible to the
// consumer only when the producer stores its new tail position, the last
// step of Put: a producer killed at any instruction leaves either a whole
// message or none. Likewise a consumer killed inside Get leaves the message
// in the ring. Neither death blocks the survivor beyond its SetPeer check.
//
// Methods of the producer side (Put, TryPut) must not be called
// concurrently with each other, nor those of the consumer side (Get,
// TryGet). Close, SetPeer, SetSpin and Wake may be called at any time.
type Ring struct {
	l        *ringLayout
	data     []byte
	mask     uint64
	capacity uint64
	maxMsg   int

	spin atomic.Int64 // time.Duration
	peer peerRef
	// Wake asks each side's sleeper to re-check the peer. One flag per side:
	// a single one could be taken by the other side's await and the Wake
	// lost for the side it was meant for.
	putHint, getHint atomic.Bool

	// Cached peer positions and poll budgets, each touched by one side
	// only; padded apart so producer and consumer goroutines of one process
	// do not false-share.
	_         [lineSize]byte
	headCache uint64       // producer: last head seen
	putSpin   adaptiveSpin // producer: poll budget while full
	_         [lineSize - 8 - 16]byte
	tailCache uint64       // consumer: last tail seen
	getSpin   adaptiveSpin // consumer: poll budget while empty
	_         [lineSize - 8 - 16]byte
}

// NewRing initialises a Ring in mem (at least RingSize(cfg) bytes, 64-byte
// aligned, usually a sub-slice of a shm.Segment) and returns a view of it.
// mem must not be in use by another view while NewRing runs. The memory must
// outlive every view.
func NewRing(mem []byte, cfg *RingConfig) (*Ring, error) {
	capacity, maxMsg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if len(mem) < ringHeaderSize+capacity {
		return nil, ErrLayout
	}
	l := view[ringLayout](mem)
	if l == nil {
		return nil, ErrLayout
	}
	l.magic.Store(0)
	l.version.Store(ringVersion)
	l.capacity.Store(uint32(capacity))
	l.mask.Store(uint32(capacity - 1))
	l.maxMsg.Store(uint32(maxMsg))
	l.closed.Store(0)
	l.tail.Store(0)
	l.head.Store(0)
	l.data.reset()
	l.space.reset()
	l.magic.Store(ringMagic) // last: an attacher that sees the magic sees the rest
	return AttachRing(mem)
}

// AttachRing returns a view of the Ring that NewRing initialised in mem,
// typically in another process. The header is treated as hostile: a wrong
// magic, version, capacity, mask, maximum message size, or positions out of
// range give ErrCorrupt (or ErrLayout if mem is too small or misaligned).
func AttachRing(mem []byte) (*Ring, error) {
	l := view[ringLayout](mem)
	if l == nil {
		return nil, ErrLayout
	}
	if l.magic.Load() != ringMagic || l.version.Load() != ringVersion {
		return nil, ErrCorrupt
	}
	capacity := uint64(l.capacity.Load())
	maxMsg := uint64(l.maxMsg.Load())
	if capacity < minRingCapacity || capacity > maxRingCapacity || capacity&(capacity-1) != 0 ||
		uint64(l.mask.Load()) != capacity-1 || maxMsg > capacity/2-recHdr {
		return nil, ErrCorrupt
	}
	if uint64(len(mem)) < ringHeaderSize+capacity {
		return nil, ErrLayout
	}
	head, tail := l.head.Load(), l.tail.Load()
	if tail-head > capacity || head%8 != 0 || tail%8 != 0 {
		return nil, ErrCorrupt
	}
	r := &Ring{
		l:        l,
		data:     mem[ringHeaderSize : ringHeaderSize+capacity : ringHeaderSize+capacity],
		mask:     capacity - 1,
		capacity: capacity,
		maxMsg:   int(maxMsg),
	}
	r.spin.Store(int64(defaultSpin))
	r.headCache = head
	r.tailCache = tail
	return r, nil
}

// MaxMessage returns the longest message the ring accepts.
func (r *Ring) MaxMessage() int { return r.maxMsg }

// SetPeer names the process at the other end. While blocked, Put and Get
// then re-check at least every 100 ms (and on Wake) whether that process is
// still alive, and return ErrPeerDied once it has exited (Get only after
// draining what it committed). pid 0 clears the peer. Liveness is read from
// /proc, so zombies count as dead and a recycled pid is not mistaken for the
// peer.
func (r *Ring) SetPeer(pid int) { r.peer.set(pid) }

// SetSpin sets the longest this view's blocked Put and Get poll before they
// sleep on the futex (default 50 µs). Within it the poll time adapts: it
// stays long while the peer answers within it (a steady stream) and falls
// to a couple of µs while waits are long, probing the full time on one wait
// in 16. Zero sleeps at once: the lowest CPU use and the highest latency (a
// futex wake costs tens of µs on a VM).
func (r *Ring) SetSpin(d time.Duration) { r.spin.Store(int64(max(d, 0))) }

// Wake makes every Put and Get blocked on this ring, in any process,
// re-check the closed flag, its context and (in this process) its peer's
// liveness now rather than at the end of the current 100 ms sleep. A process
// that monitors the peer calls it when it learns the peer died.
func (r *Ring) Wake() {
	r.putHint.Store(true)
	r.getHint.Store(true)
	r.l.data.wakeAll()
	r.l.space.wakeAll()
}

// Close marks the ring closed in shared memory and wakes all waiters in every
// process. Afterwards Put and TryPut return os.ErrClosed; Get and TryGet
// return the messages committed before Close and then os.ErrClosed. Close is
// idempotent and may be called from either side, or a third process.
func (r *Ring) Close() error {
	r.l.closed.Store(1)
	r.l.data.wakeAll()
	r.l.space.wakeAll()
	return nil
}

// Results of the non-blocking halves of put and get.
const (
	opDone = iota
	opWait
	opCorrupt
)

// put tries to commit msg, and reports opDone, opWait (no room) or opCorrupt.
// quiet skips waking a sleeping consumer.
func (r *Ring) put(msg []byte, quiet bool) int {
	n := uint64(len(msg))
	rec := recHdr + (n+7)&^7
	tail := r.l.tail.Load()
	// tail comes from shared memory: a misaligned one would make pad below
	// shorter than a record header and the header write run off the ring.
	if tail%8 != 0 {
		return opCorrupt
	}
	off := tail & r.mask
	var pad uint64
	if r.capacity-off < rec {
		pad = r.capacity - off // >= 8: off and capacity are multiples of 8
	}
	// A cached head more than a ring behind tail is only stale (this view
	// may have taken over a lane long after it attached), not proof of
	// corruption: reload it, and judge the loaded value.
	if tail-r.headCache > r.capacity || tail+pad+rec-r.headCache > r.capacity {
		head := r.l.head.Load()
		if tail-head > r.capacity || head%8 != 0 {
			return opCorrupt
		}
		r.headCache = head
		if tail+pad+rec-head > r.capacity {
			return opWait
		}
	}
	if pad != 0 {
		binary.LittleEndian.PutUint64(r.data[off:], uint64(recPad)<<32|pad)
		off = 0
	}
	binary.LittleEndian.PutUint64(r.data[off:], uint64(recMsg)<<32|n)
	copy(r.data[off+recHdr:off+recHdr+n], msg)
	// Publish: the store comes last, so a producer dying before it leaves
	// nothing visible, and (sync/atomic being sequentially consistent) the
	// load of waiters below cannot move before it (Dekker, see eventWords).
	r.l.tail.Store(tail + pad + rec)
	if !quiet {
		r.l.data.notify()
	}
	return opDone
}

// get tries to take one message, appending it to dst[:0].
func (r *Ring) get(dst []byte) ([]byte, int) {
	head := r.l.head.Load()
	// A cached tail behind head is only stale (another view, in this
	// process or another, consumed past it: a consumer handed over), not
	// proof of corruption: reload it, and judge the loaded value. Tail only
	// grows, so a cache at or ahead of head still bounds committed records.
	if avail := r.tailCache - head; avail == 0 || avail > r.capacity {
		r.tailCache = r.l.tail.Load()
		if head == r.tailCache {
			return dst, opWait
		}
	}
	avail := r.tailCache - head
	if avail > r.capacity || avail%8 != 0 || head%8 != 0 {
		return dst, opCorrupt
	}
	off := head & r.mask
	h := binary.LittleEndian.Uint64(r.data[off:])
	skip := uint64(0)
	if h>>32 == recPad {
		// The producer wrote the pad and the record after it with one tail
		// store, so a record must follow.
		skip = r.capacity - off
		if skip >= avail {
			return dst, opCorrupt
		}
		off = 0
		h = binary.LittleEndian.Uint64(r.data[0:])
	}
	n := h & 0xffffffff
	rec := recHdr + (n+7)&^7
	if h>>32 != recMsg || n > uint64(r.maxMsg) || skip+rec > avail || off+rec > r.capacity {
		return dst, opCorrupt
	}
	dst = append(dst[:0], r.data[off+recHdr:off+recHdr+n]...)
	// Release the space only after copying out; a consumer dying before
	// this store leaves the message in place.
	r.l.head.Store(head + skip + rec)
	r.l.space.notify()
	return dst, opDone
}

// TryPut commits msg if there is room now. It returns ErrTooLarge,
// os.ErrClosed, ErrFull or ErrCorrupt without blocking.
func (r *Ring) TryPut(msg []byte) error { return r.tryPut(msg, false) }

// TryPutQuiet is TryPut that does not wake a consumer sleeping on the ring:
// a consumer that polls sees the message, a sleeping one only with the next
// Put (or Wake, Close). It batches a burst of messages behind one wake-up:
// the last of the burst goes with Put, and so does one that finds the ring
// full (ErrFull), so that the consumer wakes and makes room.
func (r *Ring) TryPutQuiet(msg []byte) error { return r.tryPut(msg, true) }

func (r *Ring) tryPut(msg []byte, quiet bool) error {
	if len(msg) > r.maxMsg {
		return ErrTooLarge
	}
	if r.l.closed.Load() != 0 {
		return os.ErrClosed
	}
	switch r.put(msg, quiet) {
	case opDone:
		return nil
	case opWait:
		return ErrFull
	}
	return ErrCorrupt
}

// Put commits msg, blocking while the ring is full (backpressure): it polls
// for the spin time, then sleeps on the futex. It returns ErrTooLarge for a
// message over MaxMessage (nothing is written), os.ErrClosed once the ring is
// closed, ErrPeerDied if the SetPeer process exits, ctx's error when ctx is
// done first, ErrCorrupt on impossible shared state. It allocates nothing
// unless it has to sleep with a cancellable ctx.
func (r *Ring) Put(ctx context.Context, msg []byte) error { return r.putWait(ctx, msg, nil) }

// putWait is Put that also gives up with errDetached once *quit is set (a
// Queue being detached in this process; nil: never). Whoever sets it wakes
// r.l.space afterwards.
func (r *Ring) putWait(ctx context.Context, msg []byte, quit *atomic.Bool) error {
	for {
		if quit != nil && quit.Load() {
			return errDetached
		}
		if err := r.TryPut(msg); err != ErrFull {
			return err
		}
		if err := r.wait(ctx, &r.l.space, &r.l.head, r.headCache, &r.putSpin, &r.putHint, quit); err != nil {
			return err
		}
	}
}

// Spin returns the longest this view's blocked calls poll (see SetSpin).
func (r *Ring) Spin() time.Duration { return time.Duration(r.spin.Load()) }

// Readable reports whether Get would return without waiting: a message is
// committed, or the ring is closed.
func (r *Ring) Readable() bool {
	return r.l.tail.Load() != r.l.head.Load() || r.l.closed.Load() != 0
}

// AwaitReadable waits as Get does until Get would not block, except that
// where Get would sleep on the ring's futex it calls park, again and
// again until the ring is readable. park must return once the producer may
// have committed a message (the producer wakes it by other means, a socket
// say); it runs with the poll budget spent. A consumer that must not block
// in a system call while it waits (its runtime would hand its processor
// off) waits this way.
func (r *Ring) AwaitReadable(park func()) {
	pollThen(time.Duration(r.spin.Load()), &r.getSpin, r.Readable, func() error {
		for !r.Readable() {
			park()
		}
		return nil
	})
}

// TryGet appends the oldest committed message to dst[:0] and returns it, or
// returns ErrEmpty (os.ErrClosed once closed and drained) without blocking.
func (r *Ring) TryGet(dst []byte) ([]byte, error) {
	closed := r.l.closed.Load() != 0
	out, st := r.get(dst)
	switch st {
	case opDone:
		return out, nil
	case opCorrupt:
		return dst, ErrCorrupt
	}
	if closed {
		return dst, os.ErrClosed
	}
	return dst, ErrEmpty
}

// Get appends the oldest committed message to dst[:0] and returns it,
// blocking while the ring is empty: it polls for the spin time, then sleeps
// on the futex. After Close it returns the remaining committed messages, then
// os.ErrClosed. It returns ErrPeerDied once the SetPeer process has exited and
// everything it committed was delivered, ctx's error when ctx is done first.
// With cap(dst) large enough it allocates nothing unless it has to sleep with
// a cancellable ctx.
func (r *Ring) Get(ctx context.Context, dst []byte) ([]byte, error) {
	for {
		// TryGet reads closed before looking for data: a producer's
		// messages happen-before its Close, so closed-then-empty means
		// drained.
		out, err := r.TryGet(dst)
		if err != ErrEmpty {
			return out, err
		}
		if err := r.wait(ctx, &r.l.data, &r.l.tail, r.tailCache, &r.getSpin, &r.getHint, nil); err != nil {
			return dst, err
		}
	}
}

// wait blocks until *pos moves from seen, the ring is closed, Wake is
// called or *quit is set (quit may be nil), returning nil so the caller
// retries; or returns ctx's error, or ErrPeerDied. hint is this side's Wake
// flag: it, or a sleep slice running out, makes the wait check the peer's
// liveness from then on.
func (r *Ring) wait(ctx context.Context, ev *eventWords, pos *atomic.Uint64, seen uint64, as *adaptiveSpin,
	hint, quit *atomic.Bool) error {
	moved := func() bool {
		return pos.Load() != seen || r.l.closed.Load() != 0 || quit != nil && quit.Load()
	}
	checkPeer := false
	check := func(timedOut bool) error {
		if hint.Swap(false) || timedOut {
			checkPeer = true
		}
		// A dead peer cannot move pos any more; one last look decides.
		if checkPeer && r.peer.dead() && !moved() {
			return ErrPeerDied
		}
		return nil
	}
	return await(ctx, ev, time.Duration(r.spin.Load()), as, moved, check)
}
