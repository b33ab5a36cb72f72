package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/mproc/mproc/internal/bridge"
)

// slotLink is one pool slot's virtual worker: its task messages go to the
// stream (cut by bytes to the server's limit), its result messages come
// from whichever nodes ran the parts. It puts those back in order and
// exactly once per item before the pool sees them: a part redelivered
// after a node died may finish twice, and parts of one chunk may finish
// out of order on different nodes.
type slotLink struct {
	cl   *client
	slot int

	ctx    context.Context // ends when the worker is stopped or killed
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   [][]byte // normalised result messages for Recv
	wake    chan struct{}
	gone    bool // PeerGone: Recv drains, then os.ErrClosed
	ended   bool // stopped or killed: counted once
	exited  chan struct{}
	jobs    map[uint64]*jobState
	aborted map[uint64]bool // aborted before Send saw them
	maxJob  uint64          // highest job sent
}

// jobState is one chunk on its way: items lo..hi-1; next is the first
// item not yet handed to the pool; held keeps parts that came early.
type jobState struct {
	hi, next int
	held     map[int][]byte // first item -> result message
	seqs     []uint64
	node     string // where it was last begun
	pid      int
	// unsent ends Send's publishing of the job's parts once the job is
	// done or aborted: a publish whose ack was lost in a fail-over must
	// not hold the slot's sender (and so Close) after its results came.
	unsent context.CancelFunc
}

func newSlotLink(cl *client, slot int) *slotLink {
	ctx, cancel := context.WithCancel(context.Background())
	return &slotLink{
		cl: cl, slot: slot, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), exited: make(chan struct{}),
		jobs: make(map[uint64]*jobState), aborted: make(map[uint64]bool),
	}
}

var (
	_ bridge.Proc = (*slotLink)(nil)
	_ bridge.Link = (*slotLink)(nil)
)

func (l *slotLink) Link() bridge.Link       { return l }
func (l *slotLink) Exited() <-chan struct{} { return l.exited }
func (l *slotLink) Node() string            { return "cluster" }
func (l *slotLink) Reap() error             { <-l.exited; return nil }

// Kill ends the virtual worker: what it holds in the stream is cancelled.
func (l *slotLink) Kill() {
	l.mu.Lock()
	jobs := make([]uint64, 0, len(l.jobs))
	for j := range l.jobs {
		jobs = append(jobs, j)
	}
	l.mu.Unlock()
	for _, j := range jobs {
		l.cl.cancelJob(j)
	}
	l.end()
}

func (l *slotLink) end() {
	l.mu.Lock()
	first := !l.ended
	l.ended = true
	l.mu.Unlock()
	if first {
		l.cancel()
		close(l.exited)
	}
}

// Send publishes a task message, in parts of at most maxPart bytes; a stop
// message ends the virtual worker.
func (l *slotLink) Send(ctx context.Context, msg []byte) error {
	if len(msg) > 0 && msg[0] == kindStop {
		l.end()
		return nil
	}
	prefix, items, err := bridge.SplitTask(msg)
	if err != nil {
		panic("cluster: invariant broken: the pool encoded a task message its own parser refuses: " + err.Error())
	}
	job := binary.LittleEndian.Uint64(msg[8:])
	first := int(binary.LittleEndian.Uint32(msg[4:]))
	l.mu.Lock()
	l.maxJob = max(l.maxJob, job)
	if l.aborted[job] {
		delete(l.aborted, job)
		l.queue = append(l.queue, bridge.JoinResult(job, first, nil, false, true, 0))
		l.mu.Unlock()
		l.signal()
		return nil
	}
	jctx, unsent := context.WithCancel(l.ctx)
	defer unsent()
	js := &jobState{hi: first + len(items), next: first, held: make(map[int][]byte), unsent: unsent}
	l.jobs[job] = js
	l.mu.Unlock()

	subj := l.cl.n.task(l.cl.id, l.slot)
	limit := l.cl.maxPart
	for lo := 0; lo < len(items); {
		size := len(prefix) + len(items[lo])
		if size > limit {
			// One argument over the broker's limit: it fails alone.
			text := fmt.Sprintf("argument of %d bytes is over the broker's %d-byte message limit; pass bulk data in an shm.Array", len(items[lo])-4, limit)
			l.feed(bridge.FailedResult(job, first+lo, 1, "", 0, true, text))
			lo++
			continue
		}
		hi := lo + 1
		for hi < len(items) && size+len(items[hi]) <= limit {
			size += len(items[hi])
			hi++
		}
		part := bridge.JoinTask(prefix, first+lo, items[lo:hi])
		id := l.cl.id + "." + strconv.FormatUint(job, 10) + "." + strconv.Itoa(first+lo)
		seq, err := l.cl.publish(jctx, subj, id, part)
		switch {
		case err == nil:
		case l.ctx.Err() == nil && jctx.Err() != nil:
			return nil // the job is done or aborted: the rest is not needed
		case l.ctx.Err() == nil && errors.Is(err, errPublishGaveUp):
			// The broker stores nothing: the job's unsent items fail,
			// the worker stays for calls that come when it is back.
			l.feed(bridge.FailedResult(job, first+lo, len(items)-lo, "", 0, false, err.Error()))
			return nil
		default:
			// Stopped or killed meanwhile, or the connection is closed
			// for good: the worker ends and the pool settles its chunks.
			l.end()
			return err
		}
		l.mu.Lock()
		if js, ok := l.jobs[job]; ok {
			js.seqs = append(js.seqs, seq)
			l.mu.Unlock()
			l.cl.remember(seq, seqRef{l: l, job: job, first: first + lo, count: hi - lo})
		} else {
			l.mu.Unlock()
		}
		lo = hi
	}
	return nil
}

// maxHeld bounds the early parts held per chunk: a chunk travels in a few
// parts (a task message is at most 4 MiB), so more is a broken peer.
const maxHeld = 256

// Kinds of messages on a result subject besides pool's result messages.
const (
	kindStop  = 3    // pool's stop message (never published)
	kindBegin = 0x20 // node: kindBegin | pid u32 | job u64 | node name
)

// feed takes one message from the network (or a synthetic one) for this
// slot: a begin notice, or a result message for some items of a job. It
// reports whether the link holds what the message brought (or needs none
// of it: its job is done or aborted); false for a malformed message or one
// held beyond maxHeld.
func (l *slotLink) feed(data []byte) bool {
	if len(data) > 0 && data[0] == kindBegin {
		if len(data) < 13 || len(data) > 13+255 {
			return false
		}
		pid := int(binary.LittleEndian.Uint32(data[1:]))
		job := binary.LittleEndian.Uint64(data[5:])
		l.mu.Lock()
		if js := l.jobs[job]; js != nil {
			js.node, js.pid = string(data[13:]), pid
		}
		l.mu.Unlock()
		return true
	}
	job, first, busy, items, err := bridge.SplitResult(data)
	if err != nil {
		return false // not from a well-behaved node: dropped
	}
	l.mu.Lock()
	js := l.jobs[job]
	switch {
	case js == nil:
		l.mu.Unlock()
		return true // done or aborted: nothing more is needed
	case first < 0 || first+len(items) > js.hi:
		l.mu.Unlock()
		return false // not this job's items
	case first > js.next:
		if len(js.held) >= maxHeld {
			l.mu.Unlock()
			return false // not from well-behaved nodes; a redelivery fills the gap
		}
		js.held[first] = append([]byte(nil), data...)
		l.mu.Unlock()
		return true
	}
	l.take(job, js, first, busy, items)
	for progress := true; progress && l.jobs[job] != nil; {
		progress = false
		for f, m := range js.held {
			if f > js.next {
				continue
			}
			delete(js.held, f)
			if _, _, b, it, err := bridge.SplitResult(m); err == nil {
				l.take(job, js, f, b, it)
			}
			progress = true
			break
		}
	}
	l.mu.Unlock()
	l.signal()
	return true
}

// take hands the pool the items from js.next on that first..first+len(items)
// covers; l.mu is held.
func (l *slotLink) take(job uint64, js *jobState, first int, busy uint64, items [][]byte) {
	skip := js.next - first
	if skip >= len(items) {
		return // all delivered already: a redelivered part finished twice
	}
	items = items[skip:]
	js.next += len(items)
	done := js.next == js.hi
	l.queue = append(l.queue, bridge.JoinResult(job, first+skip, items, !done, false, busy))
	if done {
		delete(l.jobs, job)
		js.unsent()
		go l.cl.forget(js.seqs)
	}
}

// lost fails the items of a part JetStream gave up delivering.
func (l *slotLink) lost(job uint64, first, count int, deliveries uint64) {
	l.mu.Lock()
	node, pid := "", 0
	if js := l.jobs[job]; js != nil {
		node, pid = js.node, js.pid
	}
	l.mu.Unlock()
	text := fmt.Sprintf("its node stopped answering: the chunk reached MaxDeliver (%d deliveries) unacknowledged", deliveries)
	l.feed(bridge.FailedResult(job, first, count, node, pid, false, text))
}

// Abort drops the rest of job: the pool gets an aborted result at once and
// the nodes are told to skip it.
func (l *slotLink) Abort(job uint64) {
	l.mu.Lock()
	js, ok := l.jobs[job]
	switch {
	case ok:
		delete(l.jobs, job)
		js.unsent()
		l.queue = append(l.queue, bridge.JoinResult(job, js.next, nil, false, true, 0))
		go l.cl.forget(js.seqs)
	case job > l.maxJob:
		l.aborted[job] = true // Send has not seen it yet
	}
	l.mu.Unlock()
	if ok {
		l.signal()
		go l.cl.cancelJob(job)
	}
}

func (l *slotLink) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Recv returns the next result message in order; os.ErrClosed once the
// worker is gone and the queue drained.
func (l *slotLink) Recv(ctx context.Context, _ []byte) ([]byte, error) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			m := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.mu.Unlock()
			return m, nil
		}
		gone := l.gone
		l.mu.Unlock()
		if gone {
			return nil, os.ErrClosed
		}
		select {
		case <-l.wake:
		case <-l.exited:
			l.PeerGone()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (l *slotLink) PeerGone() {
	l.mu.Lock()
	l.gone = true
	l.mu.Unlock()
	l.signal()
}

// Close releases the link; the last virtual worker's Close shuts the
// client down (its connection, its nodes, its embedded server).
func (l *slotLink) Close() error {
	l.end()
	l.cl.mu.Lock()
	if l.cl.links[l.slot] == l {
		delete(l.cl.links, l.slot)
	}
	l.cl.mu.Unlock()
	if l.cl.final() {
		return l.cl.shutdown()
	}
	return nil
}
