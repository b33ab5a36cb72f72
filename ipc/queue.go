package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/mproc/mproc/internal/codec"
	"github.com/mproc/mproc/shm"
)

// QueueConfig sets the geometry of a new Queue. A nil *QueueConfig means all
// defaults.
type QueueConfig struct {
	// Producers is the number of lanes, that is, of processes that may put
	// at the same time. Zero means 8.
	Producers int

	// Ring is the geometry of each lane (nil: 256 KiB, messages up to
	// 64 KiB after encoding).
	Ring *RingConfig
}

// Queue is a typed, bounded queue in its own shared memory segment, with any
// number of producer processes and one consumer process. Values are encoded
// with the package's codec: raw bytes for fixed-size pointer-free types,
// CBOR otherwise.
//
// Each producer process gets its own lane (an SPSC Ring) on its first Put, so
// a producer killed at any instruction never blocks or corrupts the others:
// what it committed is still delivered, and its lane is reused once its pid
// is gone.
//
// Order is FIFO per producer process and round-robin across producers: the
// consumer takes one message from each non-empty lane in turn, so there is
// no global order between messages of different producers, and one busy
// producer cannot starve the others.
//
// The consumer may move from one process to another (whichever calls Get or
// TryGet), but only one process may consume at a time.
//
// A Queue travels to another process as its MarshalBinary form (the segment
// id): pass it as a pool task argument, or attach its segment in the child
// (shm.OpenFD) and call UnmarshalBinary. Methods are safe for concurrent use
// by goroutines of one process, through any number of views of the queue in
// that process (they share one lane and one lock).
type Queue[T any] struct {
	st       *queueState
	seg      *shm.Segment
	owned    bool // this view created seg and closes it in Detach
	codec    codec.Codec[T]
	detached atomic.Bool

	pbuf []byte // guarded by st.pmu
	cbuf []byte // guarded by st.cmu
}

// queueState is this process's one state for a queue, shared by all its
// views here. claim gives every view of the process the same lane (the lane's
// owner word holds the pid), and a lane's Ring takes one producer at a time,
// so their Puts must share one mutex; likewise the consumer-side caches of
// the lanes and the round-robin start belong to one consumer.
type queueState struct {
	id  uint64
	q   *lanes
	seg weak.Pointer[shm.Segment] // the mapping q views

	gate gate       // every call holds it while it touches q's memory
	pmu  sync.Mutex // serialises this process's producers on its lane
	cmu  sync.Mutex // serialises this process's consumers

	refs     int  // views not yet detached; guarded by queues.mu
	released bool // lane given back, state forgotten; guarded by queues.mu
}

// queues maps a queue segment's id to its state in this process.
var queues struct {
	mu sync.Mutex
	m  map[uint64]*queueState
}

// acquireQueue returns this process's state for the queue in seg, with one
// more reference, making it with open(seg.Bytes()) if there is none yet (or
// only one over another mapping, dead or alive).
func acquireQueue(seg *shm.Segment, open func([]byte) (*lanes, error)) (*queueState, error) {
	queues.mu.Lock()
	defer queues.mu.Unlock()
	id := seg.ID()
	if st := queues.m[id]; st != nil && st.seg.Value() == seg {
		st.refs++
		return st, nil
	}
	q, err := open(seg.Bytes())
	if err != nil {
		return nil, err
	}
	st := &queueState{id: id, q: q, seg: weak.Make(seg), refs: 1}
	if queues.m == nil {
		queues.m = make(map[uint64]*queueState)
	}
	queues.m[id] = st
	return st, nil
}

// release drops a view's reference. The last one gives the lane back; so
// does unmap (the creating view is about to unmap the segment), at once, and
// then no later release touches the memory. Either first shuts the gate:
// calls blocked in any view of this process return errDetached, and release
// returns only when none is inside the memory any more.
func (st *queueState) release(unmap bool) {
	queues.mu.Lock()
	st.refs--
	last := !st.released && (st.refs == 0 || unmap)
	if last {
		st.released = true
		if queues.m[st.id] == st {
			delete(queues.m, st.id)
		}
	}
	queues.mu.Unlock()
	if last {
		st.gate.shut(st.interrupt, st.q.release)
	}
}

// interrupt makes the calls blocked in this process's views return: it sets
// the flag their waits check, then wakes the event counts they may sleep
// on: the consumer's, and the space count of each lane this process owns.
// The wakes reach other processes' sleepers too, which re-check and sleep
// again.
func (st *queueState) interrupt() {
	q := st.q
	q.quit.Store(true)
	q.l.ev.wakeAll()
	pid := uint32(os.Getpid())
	for i, o := range q.owners {
		if o.owner.Load() == pid {
			q.rings[i].l.space.wakeAll()
		}
	}
}

// enter admits a call of view q into the queue's memory (see gate); false
// once q or the process's state for the queue is detached.
func (q *Queue[T]) enter() bool { return !q.detached.Load() && q.st.gate.enter() }

// NewQueue creates a Queue in a new shared memory segment.
func NewQueue[T any](cfg *QueueConfig) (*Queue[T], error) {
	var c QueueConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Producers == 0 {
		c.Producers = defaultLanes
	}
	size := lanesSize(c.Producers, c.Ring)
	if size < 0 {
		return nil, fmt.Errorf("new queue: %w", ErrLayout)
	}
	seg, err := shm.New("queue", size)
	if err != nil {
		return nil, fmt.Errorf("new queue: %w", err)
	}
	st, err := acquireQueue(seg, func(mem []byte) (*lanes, error) {
		return newLanes(mem, c.Producers, c.Ring)
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("new queue: %w", err), seg.Close())
	}
	return &Queue[T]{st: st, seg: seg, owned: true, codec: codec.For[T]()}, nil
}

// Put encodes v and commits it, blocking while this process's lane is full.
// It returns os.ErrClosed after Close or Detach, ErrNoLane if every lane belongs to a
// live process, ErrTooLarge if the encoding exceeds the lane's MaxMessage,
// ctx's error, or ErrPeerDied when the consuming process (the one that
// created the queue, or else the last one to call Get or TryGet) dies while
// Put waits for room, noticed within about 100 ms.
func (q *Queue[T]) Put(ctx context.Context, v T) error {
	if !q.enter() {
		return errDetached
	}
	defer q.st.gate.exit()
	q.st.pmu.Lock()
	defer q.st.pmu.Unlock()
	b, err := q.codec.Append(q.pbuf[:0], v)
	if err != nil {
		return fmt.Errorf("queue put: %w", err)
	}
	q.pbuf = b
	return q.st.q.put(ctx, b, true)
}

// TryPut is Put without blocking: ErrFull when the lane has no room.
func (q *Queue[T]) TryPut(v T) error {
	if !q.enter() {
		return errDetached
	}
	defer q.st.gate.exit()
	q.st.pmu.Lock()
	defer q.st.pmu.Unlock()
	b, err := q.codec.Append(q.pbuf[:0], v)
	if err != nil {
		return fmt.Errorf("queue put: %w", err)
	}
	q.pbuf = b
	return q.st.q.put(context.Background(), b, false)
}

// Get returns the next value, blocking while every lane is empty. After
// Close it returns what was committed, then os.ErrClosed; after Detach (of
// this view, or of the creator's view in this process) it returns an error
// wrapping os.ErrClosed at once. A value that fails to decode is consumed
// and reported as an error. A lane found corrupt is reported once, with an
// error wrapping ErrCorrupt that names the lane and its producer's pid; this
// process never reads that lane again and goes on serving the others. Get
// and TryGet make this process the queue's consumer, whose death blocked
// producers notice.
func (q *Queue[T]) Get(ctx context.Context) (T, error) {
	if !q.enter() {
		var zero T
		return zero, errDetached
	}
	defer q.st.gate.exit()
	q.st.cmu.Lock()
	defer q.st.cmu.Unlock()
	q.st.q.consume()
	return q.decode(q.st.q.get(ctx, q.cbuf))
}

// TryGet is Get without blocking: ErrEmpty when nothing is waiting.
func (q *Queue[T]) TryGet() (T, error) {
	if !q.enter() {
		var zero T
		return zero, errDetached
	}
	defer q.st.gate.exit()
	q.st.cmu.Lock()
	defer q.st.cmu.Unlock()
	q.st.q.consume()
	return q.decode(q.st.q.tryGet(q.cbuf))
}

func (q *Queue[T]) decode(b []byte, err error) (T, error) {
	var v T
	if err != nil {
		return v, err
	}
	q.cbuf = b
	if err := q.codec.Decode(b, &v); err != nil {
		return v, fmt.Errorf("queue get: %w", err)
	}
	return v, nil
}

// Close closes the queue for every process: blocked and later Puts return
// os.ErrClosed, and consumers drain what was committed, then get
// os.ErrClosed. It is idempotent, and does nothing on a detached view. It
// does not release memory; see Detach.
func (q *Queue[T]) Close() error {
	if !q.enter() {
		return nil // detached here: the memory is no longer this process's to touch
	}
	defer q.st.gate.exit()
	q.st.q.close()
	return nil
}

// Detach drops this view. The process's lane is given back (its committed
// messages are still delivered) when its last view of the queue detaches, or
// when the view that NewQueue returned does, since that also closes the
// segment and with it every view in the process. Before it lets the memory
// go, Detach makes the calls blocked in those views return an error wrapping
// os.ErrClosed and waits until every call has left; later calls on them
// return that error too. Calls on this view after Detach return it, and a
// second Detach does nothing.
func (q *Queue[T]) Detach() error {
	if q.detached.Swap(true) {
		return nil
	}
	q.st.release(q.owned)
	if q.owned {
		return q.seg.Close()
	}
	return nil
}

// Len returns how many messages have been committed to the queue and not
// yet taken, across all lanes. It is a snapshot: producers and the consumer,
// in this process or others, may change it before Len returns, so use it for
// monitoring and back-off decisions, not to predict that a Get will not
// block. A producer killed between committing a message and counting it
// leaves its lane's figure one short. It returns 0 on a detached view.
func (q *Queue[T]) Len() int {
	if !q.enter() {
		return 0
	}
	defer q.st.gate.exit()
	return q.st.q.len()
}

const queueWireMagic = "ipcQ"

// MarshalBinary encodes the queue as a reference to its segment (not its
// contents).
func (q *Queue[T]) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, len(queueWireMagic)+8)
	b = append(b, queueWireMagic...)
	return binary.LittleEndian.AppendUint64(b, q.seg.ID()), nil
}

// UnmarshalBinary attaches q to the queue that MarshalBinary described,
// resolving its segment with shm.Lookup (in an mproc worker, that fetches the
// descriptor from the parent). The segment stays owned by the registry.
func (q *Queue[T]) UnmarshalBinary(b []byte) error {
	if len(b) != len(queueWireMagic)+8 || string(b[:len(queueWireMagic)]) != queueWireMagic {
		return fmt.Errorf("unmarshal queue: %w", ErrCorrupt)
	}
	seg, err := shm.Lookup(binary.LittleEndian.Uint64(b[len(queueWireMagic):]))
	if err != nil {
		return fmt.Errorf("unmarshal queue: %w", err)
	}
	st, err := acquireQueue(seg, attachLanes)
	if err != nil {
		return fmt.Errorf("unmarshal queue: %w", err)
	}
	*q = Queue[T]{st: st, seg: seg, codec: codec.For[T]()}
	return nil
}
