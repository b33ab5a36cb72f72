package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

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
// is gone. Messages of one producer arrive in order; different producers are
// served round-robin.
//
// A Queue travels to another process as its MarshalBinary form (the segment
// id): pass it as a pool task argument, or attach its segment in the child
// (shm.OpenFD) and call UnmarshalBinary. Methods are safe for concurrent use
// by goroutines of one process; only one process may consume.
type Queue[T any] struct {
	q     *lanes
	seg   *shm.Segment
	owned bool // this view created seg and closes it in Detach
	codec codec.Codec[T]

	pmu  sync.Mutex // serialises this process's producers on its lane
	pbuf []byte
	cmu  sync.Mutex // serialises this process's consumers
	cbuf []byte
}

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
	q, err := newLanes(seg.Bytes(), c.Producers, c.Ring)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("new queue: %w", err), seg.Close())
	}
	return &Queue[T]{q: q, seg: seg, owned: true, codec: codec.For[T]()}, nil
}

// Put encodes v and commits it, blocking while this process's lane is full.
// It returns os.ErrClosed after Close, ErrNoLane if every lane belongs to a
// live process, ErrTooLarge if the encoding exceeds the lane's MaxMessage,
// or ctx's error.
func (q *Queue[T]) Put(ctx context.Context, v T) error {
	q.pmu.Lock()
	defer q.pmu.Unlock()
	b, err := q.codec.Append(q.pbuf[:0], v)
	if err != nil {
		return fmt.Errorf("queue put: %w", err)
	}
	q.pbuf = b
	return q.q.put(ctx, b, true)
}

// TryPut is Put without blocking: ErrFull when the lane has no room.
func (q *Queue[T]) TryPut(v T) error {
	q.pmu.Lock()
	defer q.pmu.Unlock()
	b, err := q.codec.Append(q.pbuf[:0], v)
	if err != nil {
		return fmt.Errorf("queue put: %w", err)
	}
	q.pbuf = b
	return q.q.put(context.Background(), b, false)
}

// Get returns the next value, blocking while every lane is empty. After
// Close it returns what was committed, then os.ErrClosed. A value that fails
// to decode is consumed and reported as an error.
func (q *Queue[T]) Get(ctx context.Context) (T, error) {
	q.cmu.Lock()
	defer q.cmu.Unlock()
	return q.decode(q.q.get(ctx, q.cbuf))
}

// TryGet is Get without blocking: ErrEmpty when nothing is waiting.
func (q *Queue[T]) TryGet() (T, error) {
	q.cmu.Lock()
	defer q.cmu.Unlock()
	return q.decode(q.q.tryGet(q.cbuf))
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
// os.ErrClosed. It is idempotent. It does not release memory; see Detach.
func (q *Queue[T]) Close() error {
	q.q.close()
	return nil
}

// Detach gives this process's lane back (its committed messages are still
// delivered) and, in the process that called NewQueue, closes the segment.
// The Queue must not be used afterwards.
func (q *Queue[T]) Detach() error {
	q.pmu.Lock()
	q.q.release()
	q.pmu.Unlock()
	if q.owned {
		return q.seg.Close()
	}
	return nil
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
	l, err := attachLanes(seg.Bytes())
	if err != nil {
		return fmt.Errorf("unmarshal queue: %w", err)
	}
	*q = Queue[T]{q: l, seg: seg, codec: codec.For[T]()}
	return nil
}
