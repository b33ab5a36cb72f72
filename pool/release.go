package pool

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mproc/mproc/internal/fdpass"
	"github.com/mproc/mproc/shm"
)

// Segment release. A worker maps a segment (an shm.Array, an ipc.Queue)
// the first time a task names it, by fetching its descriptor from the
// parent (serveFetch). When the parent closes that segment, every worker it
// was served to must unmap it too, or a long-lived pool keeps every array
// it ever saw. The parent remembers which children fetched which segment;
// on Close it posts a release on each such child's control socket and then
// counts it in the child's link control page. A worker applies releases
// while no task runs (a task may hold slices into the mapping), and before
// each task message waits until it has received every release counted so
// far, so a segment closed before a call is gone from the worker before
// that call's tasks run.

// liveChildren is every child process this process has started and not
// reaped yet.
var liveChildren struct {
	mu sync.Mutex
	m  map[*child]struct{}
}

func rememberChild(c *child) {
	liveChildren.mu.Lock()
	defer liveChildren.mu.Unlock()
	if liveChildren.m == nil {
		liveChildren.m = make(map[*child]struct{})
	}
	liveChildren.m[c] = struct{}{}
}

func forgetChild(c *child) {
	liveChildren.mu.Lock()
	defer liveChildren.mu.Unlock()
	delete(liveChildren.m, c)
}

// served records that c fetched seg. If seg was closed while it was being
// served, the release is posted at once: its Close hook ran before the
// record existed.
func served(c *child, id uint64, seg *shm.Segment) {
	liveChildren.mu.Lock()
	if c.served == nil {
		c.served = make(map[uint64]struct{})
	}
	c.served[id] = struct{}{}
	liveChildren.mu.Unlock()
	if seg.File() == nil {
		segmentClosed(id)
	}
}

// segmentClosed is the parent's fdpass.Closed hook: post a release of id to
// every live child that fetched it.
func segmentClosed(id uint64) {
	liveChildren.mu.Lock()
	defer liveChildren.mu.Unlock()
	for c := range liveChildren.m {
		if _, ok := c.served[id]; !ok {
			continue
		}
		delete(c.served, id)
		if c.sendRelease(id) == nil && c.releases != nil {
			c.releases.ctl.releases.Add(1)
		}
	}
}

func init() { fdpass.Closed = segmentClosed }

// releaseWait bounds how long a worker waits, before a task, for a release
// the parent has counted but the control socket has not delivered yet
// (normally microseconds: the message is in the socket before the count).
const releaseWait = time.Second

// releaser is the worker's side: it applies the releases the control
// socket delivers, at once while idle, else when the running task ends.
type releaser struct {
	posted   *atomic.Uint64 // the parent's count, in the link control page
	received atomic.Uint64

	mu      sync.Mutex
	running bool
	pending []uint64
}

// post is called by the control-socket reader for each release.
func (r *releaser) post(id uint64) {
	r.mu.Lock()
	if r.running {
		r.pending = append(r.pending, id)
	} else {
		release(id)
	}
	r.received.Add(1)
	r.mu.Unlock()
}

// begin is called before a task message runs: it waits for the releases
// the parent counted, applies them, and holds further ones back.
func (r *releaser) begin() {
	if r.posted != nil {
		want := r.posted.Load()
		for deadline := time.Now().Add(releaseWait); r.received.Load() < want && time.Now().Before(deadline); {
			time.Sleep(20 * time.Microsecond)
		}
	}
	r.mu.Lock()
	r.applyLocked()
	r.running = true
	r.mu.Unlock()
}

// end is called after a task message ran: held-back releases apply now.
func (r *releaser) end() {
	r.mu.Lock()
	r.running = false
	r.applyLocked()
	r.mu.Unlock()
}

func (r *releaser) applyLocked() {
	for _, id := range r.pending {
		release(id)
	}
	r.pending = r.pending[:0]
}

// release drops segment id if this process fetched it.
func release(id uint64) {
	if fdpass.Release != nil {
		fdpass.Release(id)
	}
}
