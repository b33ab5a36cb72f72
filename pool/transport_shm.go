package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/mproc/mproc/ipc"
	"github.com/mproc/mproc/shm"
)

// shmTransport gives each worker one memfd segment holding two SPSC rings:
// tasks (the parent is the only producer) and results (the worker is the
// only producer). A dead worker's rings are simply discarded with its
// segment; nothing it half-wrote is ever delivered (see ipc.Ring). The
// worker maps the segment through shm.Lookup, which fetches its memfd over
// the control socket.
type shmTransport struct {
	ring ipc.RingConfig
	spin time.Duration
}

// Default ring geometry: 1 MiB per direction, so a worker's two in-flight
// task messages of a batched Map fit without blocking the sender.
const (
	ringCapacity = 1 << 20
	ringAlign    = 4096
	defaultSpin  = 50 * time.Microsecond
)

func newShmTransport() *shmTransport {
	return &shmTransport{ring: ipc.RingConfig{Capacity: ringCapacity}, spin: defaultSpin}
}

func (t *shmTransport) pair(worker int) (link, []*os.File, string, error) {
	half := (ipc.RingSize(&t.ring) + ringAlign - 1) &^ (ringAlign - 1)
	seg, err := shm.New("pool-w"+strconv.Itoa(worker), 2*half)
	if err != nil {
		return nil, nil, "", fmt.Errorf("worker rings: %w", err)
	}
	mem := seg.Bytes()
	tasks, err := ipc.NewRing(mem[:half], &t.ring)
	if err == nil {
		var results *ipc.Ring
		results, err = ipc.NewRing(mem[half:], &t.ring)
		if err == nil {
			l := &shmLink{seg: seg, out: tasks, in: results, half: half}
			l.setSpin(t.spin)
			return l, nil, "shm:" + strconv.FormatUint(seg.ID(), 16) + ":" + strconv.Itoa(half), nil
		}
	}
	seg.Close()
	return nil, nil, "", fmt.Errorf("worker rings: %w", err)
}

// openShmLink is the worker's end: attach the parent's segment and its rings.
func openShmLink(arg string) (link, error) {
	idText, halfText, _ := cutColon(arg)
	id, err := strconv.ParseUint(idText, 16, 64)
	if err != nil {
		return nil, fmt.Errorf("pool: bad shm transport spec %q", arg)
	}
	half, err := strconv.Atoi(halfText)
	if err != nil || half <= 0 {
		return nil, fmt.Errorf("pool: bad shm transport spec %q", arg)
	}
	seg, err := shm.Lookup(id)
	if err != nil {
		return nil, fmt.Errorf("worker rings: %w", err)
	}
	mem := seg.Bytes()
	if len(mem) < 2*half {
		return nil, fmt.Errorf("worker rings: segment of %d bytes, want %d", len(mem), 2*half)
	}
	tasks, err := ipc.AttachRing(mem[:half])
	if err != nil {
		return nil, fmt.Errorf("worker task ring: %w", err)
	}
	results, err := ipc.AttachRing(mem[half:])
	if err != nil {
		return nil, fmt.Errorf("worker result ring: %w", err)
	}
	// A parent that dies makes blocked ring calls return (the control
	// socket's EOF and Pdeathsig normally end the process first).
	tasks.SetPeer(os.Getppid())
	results.SetPeer(os.Getppid())
	l := &shmLink{out: results, in: tasks, half: half}
	l.setSpin(defaultSpin)
	return l, nil
}

func cutColon(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Fragment markers: a message longer than the ring's MaxMessage travels as
// fragments, each starting with one of these bytes (never a message kind).
const (
	fragMore = 0xF0
	fragLast = 0xF1
)

// shmLink is one end of a worker's pair of rings.
type shmLink struct {
	seg     *shm.Segment // parent end only: owns the segment
	out, in *ipc.Ring
	half    int
	// The sender and the collector run on different goroutines: each
	// has its own fragment buffer.
	sendFrag []byte // used by send only
	recvFrag []byte // used by recv only
}

func (l *shmLink) setSpin(d time.Duration) {
	l.out.SetSpin(d)
	l.in.SetSpin(d)
}

func (l *shmLink) send(ctx context.Context, msg []byte) error {
	max := l.out.MaxMessage()
	if len(msg) <= max && len(msg) > 0 && msg[0] < fragMore {
		return l.out.Put(ctx, msg)
	}
	step := max - 1
	for len(msg) > 0 {
		n := min(step, len(msg))
		mark := byte(fragMore)
		if n == len(msg) {
			mark = fragLast
		}
		l.sendFrag = append(append(l.sendFrag[:0], mark), msg[:n]...)
		if err := l.out.Put(ctx, l.sendFrag); err != nil {
			return err
		}
		msg = msg[n:]
	}
	return nil
}

// trySend puts msg in the ring if it fits in one record and the ring has
// room now. A message that travels as fragments would need the consumer to
// make room between them, so it always reports errWouldBlock.
func (l *shmLink) trySend(msg []byte) error {
	if len(msg) > l.out.MaxMessage() || len(msg) == 0 || msg[0] >= fragMore {
		return errWouldBlock
	}
	err := l.out.TryPut(msg)
	if errors.Is(err, ipc.ErrFull) {
		return errWouldBlock
	}
	return err
}

func (l *shmLink) recv(ctx context.Context, dst []byte) ([]byte, error) {
	var err error
	dst, err = l.in.Get(ctx, dst)
	if err != nil || len(dst) == 0 || dst[0] < fragMore {
		return dst, err
	}
	// Reassemble: the first fragment is in dst.
	whole := append(l.recvFrag[:0], dst[1:]...)
	last := dst[0] == fragLast
	for !last {
		if dst, err = l.in.Get(ctx, dst); err != nil {
			return dst[:0], err
		}
		if len(dst) == 0 || dst[0] < fragMore {
			return dst[:0], errors.New("pool: broken message fragments from peer")
		}
		if len(whole)+len(dst) > maxMessage {
			return dst[:0], fmt.Errorf("pool: message over the %d-byte limit", maxMessage)
		}
		last = dst[0] == fragLast
		whole = append(whole, dst[1:]...)
	}
	l.recvFrag = whole
	return append(dst[:0], whole...), nil
}

// peerGone closes both rings: the collector drains what the worker
// committed, then gets os.ErrClosed; a blocked sender returns at once.
func (l *shmLink) peerGone() {
	l.in.Close()
	l.out.Close()
}

func (l *shmLink) close() error {
	l.in.Close()
	l.out.Close()
	if l.seg != nil {
		return l.seg.Close()
	}
	return nil
}
