package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mproc/mproc/ipc"
	"github.com/mproc/mproc/shm"
)

// link is one end of the duplex message channel between the parent and
// one worker: task messages one way, result messages the other (wire.go).
// A backend provides it with each proc; the pool core talks only to link,
// so a remote worker plugs in without a change visible to users. Only one
// goroutine calls send/trySend and only one calls recv at a time; peerGone
// and the control methods may be called at any time.
type link interface {
	// send delivers one whole message, blocking while the channel is full.
	send(ctx context.Context, msg []byte) error
	// trySend delivers msg only if it can do so without waiting;
	// otherwise it sends nothing and returns errWouldBlock.
	trySend(msg []byte) error
	// recv returns the next message, reusing buf's memory when it can.
	// It returns os.ErrClosed once the channel is closed and drained, or
	// an error if the peer died or broke the protocol.
	recv(ctx context.Context, buf []byte) ([]byte, error)
	// peerGone tells the parent's end that the worker has exited: recv
	// returns what was committed, then an error, without waiting for a
	// liveness timeout.
	peerGone()

	// Parent side: taken returns the job of the last task message the
	// worker began (0 if none). It comes from the worker, so it is used
	// only to decide whether a dead worker's chunk costs a retry.
	taken() uint64
	// abort asks the worker to skip the items it has not started of the
	// task message sent as seq (the link's send count) carrying job.
	abort(seq, job uint64)

	// Worker side: begin records that the worker starts job; aborted
	// reports whether the parent asked to skip the rest of job.
	begin(job uint64)
	aborted(job uint64) bool

	// close releases this end; blocked calls return.
	close() error
}

// errWouldBlock is returned by link.trySend when sending needs to wait.
var errWouldBlock = errors.New("pool: link would block")

// Message size limits. A value (one argument or result) encodes to at most
// maxValue bytes, the codec's own limit. Messages aim at softMessage: a
// chunk of many items is cut there by whoever encodes it, so one message
// never holds more than softMessage bytes plus one value; maxMessage
// bounds what a receiver reassembles from fragments, and so the memory a
// broken peer can make it allocate.
const (
	maxValue    = 64 << 20
	softMessage = 4 << 20
	maxMessage  = maxValue + 1<<20
	// maxText bounds error and panic texts a worker sends back.
	maxText = 64 << 10
)

// The link's segment: a page of control words, then the task ring (the
// parent is its only producer) and the result ring (the worker is its only
// producer). A dead worker's segment is simply discarded; nothing it
// half-wrote is ever delivered (see ipc.Ring).
const (
	ringCapacity = 1 << 20 // per direction: two in-flight task messages fit
	pageSize     = 4096
	controlMagic = 0x4b4e4c50 // "PLNK"
)

// linkControl is the control page at the start of a link's segment. Each
// line has one writer: line 1 the worker, line 2 the parent. Values read
// from the other side are hostile: they only steer retries and skipping,
// never an index or a size.
type linkControl struct {
	magic atomic.Uint32
	_     [60]byte

	// takenJob is the job of the task message the worker began last.
	takenJob atomic.Uint64
	// The worker's claim on a pulled call (board.go): items claimLo up to
	// claimHi of job claimJob, and claimCur, the item it began last
	// (noItem before the first). It writes claimCur = noItem before a new
	// claim and the item before running it, so a dead worker's record says
	// which items may have run: claimLo..claimCur.
	claimJob, claimLo, claimHi, claimCur atomic.Uint64
	_                                    [24]byte

	// abortJob[s%depth] holds the job of the task message sent as s when
	// the parent asked to skip its rest. At most depth messages are in
	// flight and their send counts are consecutive, so they never share
	// a slot; jobs are never reused, so a stale entry matches nothing.
	abortJob [depth]atomic.Uint64
	// releases counts the segment releases the parent has posted on the
	// worker's control socket (release.go).
	releases atomic.Uint64
	_        [64 - 8*depth - 8]byte

	// parked is 1 while the parent's collector waits for a result without
	// polling: the worker, having committed a message, takes it back and
	// rings the collector's bell (see shmLink.park). Both sides
	// write it.
	parked atomic.Uint32
}

// shmLink is one end of a worker's link segment.
type shmLink struct {
	seg     *shm.Segment // parent end only: owns the segment
	ctl     *linkControl
	out, in *ipc.Ring

	// The sender and the collector run on different goroutines: each
	// has its own fragment buffer.
	sendFrag []byte // used by send only
	recvFrag []byte // used by recv only

	spin time.Duration // the result ring's poll time while no call is pulled

	// The collector's wait. It never sleeps in a system call: a goroutine
	// blocked in one makes the Go runtime hand its P off and keeps sysmon
	// waking every 20 µs, each wake preempting a worker on a 2-CPU machine
	// (perf: dozens of context switches per KDE sweep). It polls, then
	// parks on its bell (wake_linux.go), which the worker rings (notify),
	// or the parent itself when the worker dies.
	bell  *bell        // parent end
	woken atomic.Int64 // parent end: rings received (for tests)
	// idle, if set, reports that no result is due (nothing in flight): a
	// parked collector then waits idleParkSlice. Parent end, collector only.
	idle   func() bool
	notify func() // worker end: ring the parent's bell

	mapped *shm.Segment // worker end: holds the inherited segment mapped
}

var _ link = (*shmLink)(nil)

// newShmLink creates the parent's end of a new link for worker slot and
// the spec that the worker passes to openShmLink.
func newShmLink(slot int) (*shmLink, string, error) {
	cfg := ipc.RingConfig{Capacity: ringCapacity}
	half := (ipc.RingSize(&cfg) + pageSize - 1) &^ (pageSize - 1)
	b, err := newBell()
	if err != nil {
		return nil, "", fmt.Errorf("worker link: %w", err)
	}
	seg, err := shm.New("pool-w"+strconv.Itoa(slot), pageSize+2*half)
	if err != nil {
		b.close()
		return nil, "", fmt.Errorf("worker link: %w", err)
	}
	mem := seg.Bytes()
	ctl := controlView(mem[:pageSize])
	tasks, err := ipc.NewRing(mem[pageSize:pageSize+half], &cfg)
	if err == nil {
		var results *ipc.Ring
		results, err = ipc.NewRing(mem[pageSize+half:], &cfg)
		if err == nil {
			ctl.magic.Store(controlMagic)
			l := &shmLink{seg: seg, ctl: ctl, out: tasks, in: results, spin: results.Spin(), bell: b}
			return l, "shm:" + strconv.FormatUint(seg.ID(), 16) + ":" + strconv.Itoa(half), nil
		}
	}
	return nil, "", errors.Join(fmt.Errorf("worker link: %w", err), seg.Close(), b.close())
}

// workerSpin is how long a worker polls its task ring for the next message
// before it sleeps on the futex. It covers the gap between two calls made
// back to back (the parent's end of one call and its start of the next:
// 40-100 µs of hops on a 2-CPU VM), so the next call finds the worker awake
// instead of paying a futex wake (tens of µs, seen from the caller) per
// worker. The poll yields its CPU after 10 µs, and the ring's adaptive
// budget shrinks it to a couple of µs once waits outlast it: a worker idle
// between sparse calls does not burn CPU.
const workerSpin = 300 * time.Microsecond

// openShmLink is the worker's end: attach the parent's segment and rings.
// inherited is the segment the worker got at exec (linkFD), if any;
// without it the segment is looked up (a link opened in its own process,
// in tests).
func openShmLink(spec string, inherited *shm.Segment) (*shmLink, error) {
	kind, rest, _ := strings.Cut(spec, ":")
	idText, halfText, _ := strings.Cut(rest, ":")
	id, err1 := strconv.ParseUint(idText, 16, 64)
	half, err2 := strconv.Atoi(halfText)
	if kind != "shm" || err1 != nil || err2 != nil || half <= 0 {
		return nil, fmt.Errorf("pool: bad link spec %q", spec)
	}
	seg := inherited
	if seg != nil && seg.ID() != id {
		return nil, errors.Join(fmt.Errorf("pool: inherited link segment %x, want %x", seg.ID(), id), seg.Close())
	}
	if seg == nil {
		var err error
		if seg, err = shm.Lookup(id); err != nil {
			return nil, fmt.Errorf("worker link: %w", err)
		}
	}
	mem := seg.Bytes()
	if len(mem) < pageSize+2*half {
		return nil, fmt.Errorf("worker link: segment of %d bytes, want %d", len(mem), pageSize+2*half)
	}
	ctl := controlView(mem[:pageSize])
	if ctl.magic.Load() != controlMagic {
		return nil, fmt.Errorf("worker link: %w", ipc.ErrCorrupt)
	}
	tasks, err := ipc.AttachRing(mem[pageSize : pageSize+half])
	if err != nil {
		return nil, fmt.Errorf("worker task ring: %w", err)
	}
	results, err := ipc.AttachRing(mem[pageSize+half:])
	if err != nil {
		return nil, fmt.Errorf("worker result ring: %w", err)
	}
	// A parent that dies makes blocked ring calls return (the control
	// socket's EOF and Pdeathsig normally end the process first).
	tasks.SetPeer(os.Getppid())
	tasks.SetSpin(workerSpin)
	results.SetPeer(os.Getppid())
	return &shmLink{ctl: ctl, out: results, in: tasks, mapped: seg}, nil
}

// Fragment markers: a message longer than the ring's MaxMessage travels as
// fragments, each starting with one of these bytes (never a message kind).
// The first fragment holds only the message's total length (u64), so the
// receiver checks it against maxMessage and allocates once.
const (
	fragMore  = 0xF0
	fragLast  = 0xF1
	fragFirst = 0xF2
	firstLen  = 9
)

func (l *shmLink) send(ctx context.Context, msg []byte) error {
	if len(msg) == 0 || len(msg) > maxMessage || msg[0] >= fragMore {
		panic("pool: invariant broken: an empty, oversize or fragment-like message was encoded")
	}
	max := l.out.MaxMessage()
	if l.notify != nil {
		defer l.wakeParked()
	}
	if len(msg) <= max {
		return l.out.Put(ctx, msg)
	}
	l.sendFrag = binary.LittleEndian.AppendUint64(append(l.sendFrag[:0], fragFirst), uint64(len(msg)))
	if err := l.out.Put(ctx, l.sendFrag); err != nil {
		return err
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
	if cap(l.sendFrag) > 2*max {
		l.sendFrag = nil
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

// errBrokenPeer reports bytes no well-behaved peer sends.
var errBrokenPeer = errors.New("pool: broken message from peer")

// recv returns the next whole message. A fragmented one is reassembled in
// a buffer of exactly its announced length, at most maxMessage: a peer
// that floods fragments costs this process that much memory at most before
// it is cut off.
func (l *shmLink) recv(ctx context.Context, buf []byte) ([]byte, error) {
	first, err := l.in.Get(ctx, buf)
	if err != nil || len(first) == 0 || first[0] < fragMore {
		return first, err
	}
	if first[0] != fragFirst || len(first) != firstLen {
		return first[:0], fmt.Errorf("%w: a fragment without its announcement", errBrokenPeer)
	}
	total := binary.LittleEndian.Uint64(first[1:])
	if total == 0 || total > maxMessage {
		return first[:0], fmt.Errorf("%w: a message of %d bytes announced, the limit is %d", errBrokenPeer, total, maxMessage)
	}
	whole := l.recvFrag[:0]
	if uint64(cap(whole)) < total {
		whole = make([]byte, 0, total)
	}
	for {
		frag, err := l.in.Get(ctx, first)
		if err != nil {
			return frag[:0], err
		}
		first = frag
		if len(frag) == 0 || (frag[0] != fragMore && frag[0] != fragLast) {
			return frag[:0], fmt.Errorf("%w: a fragment expected", errBrokenPeer)
		}
		if uint64(len(whole)+len(frag)-1) > total {
			l.recvFrag = nil
			return frag[:0], fmt.Errorf("%w: fragments beyond the announced %d bytes", errBrokenPeer, total)
		}
		whole = append(whole, frag[1:]...)
		if frag[0] == fragLast {
			break
		}
	}
	if uint64(len(whole)) != total {
		return first[:0], fmt.Errorf("%w: fragments short of the announced %d bytes", errBrokenPeer, total)
	}
	// Hand the reassembled buffer to the caller and keep the caller's
	// for the next reassembly: no copy of a large message.
	l.recvFrag = first[:0]
	return whole, nil
}

// peerGone closes both rings: the collector drains what the worker
// committed, then gets os.ErrClosed; a blocked sender returns at once.
func (l *shmLink) peerGone() {
	l.in.Close()
	l.out.Close()
	if l.bell != nil {
		l.wakeCollector()
	}
}

func (l *shmLink) taken() uint64 { return l.ctl.takenJob.Load() }

// sendQuiet is send without waking a sleeping parent: the message is seen
// with the next one sent with send (a pulled call's results, see board.go).
// A full ring wakes the parent, who makes room.
func (l *shmLink) sendQuiet(ctx context.Context, msg []byte) error {
	if len(msg) <= l.out.MaxMessage() && len(msg) > 0 && msg[0] < fragMore {
		err := l.out.TryPutQuiet(msg)
		if !errors.Is(err, ipc.ErrFull) {
			return err
		}
	}
	return l.send(ctx, msg)
}

// wakeParked is the worker's half of parked: called after committing a
// message, it wakes a parked collector. The parent stores parked = 1 and
// then looks at the ring; the worker commits and then takes parked: one of
// them sees the other (sequentially consistent atomics).
func (l *shmLink) wakeParked() {
	if l.notify != nil && l.ctl.parked.Load() != 0 && l.ctl.parked.Swap(0) != 0 {
		l.notify()
	}
}

// wakeCollector ends a parked collector's wait, from the parent.
func (l *shmLink) wakeCollector() { l.bell.ring() }

// parkSlice bounds a parked collector's wait while a result is due,
// should a wake be lost (a pulled call's participant that died between
// committing its last message and counting itself out, say). With nothing
// in flight no result is due, so an idle collector waits idleParkSlice:
// an idle pool of 6 workers cost its parent 1.4-1.5% of a CPU in 20 ms
// wake-ups, against 0.25% with 1 s (BenchmarkIdlePool, whose own timer
// accounts for part of that). A call sent meanwhile does not shorten that
// wait, so in the case above the call's end comes up to idleParkSlice
// late; it is never lost.
const (
	parkSlice     = 20 * time.Millisecond
	idleParkSlice = time.Second
)

func (l *shmLink) park() {
	l.ctl.parked.Store(1)
	if l.in.Readable() {
		l.ctl.parked.Store(0)
		return
	}
	slice := parkSlice
	if l.idle != nil && l.idle() {
		slice = idleParkSlice
	}
	if l.bell.wait(slice) {
		l.woken.Add(1)
	}
}

// claim reads the worker's claim record (see linkControl). It comes from
// the worker: the caller clamps it to the call.
func (l *shmLink) claim() claimRecord {
	c := l.ctl
	return claimRecord{job: c.claimJob.Load(), lo: c.claimLo.Load(), hi: c.claimHi.Load(), cur: c.claimCur.Load()}
}

// setCollectSpin makes the parent's collector poll (on) or sleep at once
// (off) when no result is waiting: while a pulled call runs, results come
// quietly and a poll would only burn a CPU the workers need.
func (l *shmLink) setCollectSpin(on bool) {
	if on {
		l.in.SetSpin(l.spin)
	} else {
		l.in.SetSpin(0)
	}
}

func (l *shmLink) abort(seq, job uint64) { l.ctl.abortJob[seq%depth].Store(job) }

func (l *shmLink) begin(job uint64) { l.ctl.takenJob.Store(job) }

func (l *shmLink) aborted(job uint64) bool {
	for i := range l.ctl.abortJob {
		if l.ctl.abortJob[i].Load() == job {
			return true
		}
	}
	return false
}

func (l *shmLink) close() error {
	l.in.Close()
	l.out.Close()
	var err error
	if l.bell != nil {
		err = l.bell.close()
	}
	if l.seg != nil {
		err = errors.Join(l.seg.Close(), err)
	}
	return err
}
