package pool

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mproc/mproc/internal/codec"
)

// call is one Apply or Map call: n items sharing a function, their
// arguments encoded when the call is made.
type call struct {
	e    *entry
	cfg  callConfig
	n    int
	args *encoded
	dec  func(i int, b []byte) error // stores item i's result
	// decRun, for results of a raw type, stores the n results from item i
	// found at body[k*step:] (k < n) and returns how many it stored: fewer
	// when one does not decode (dec then reports it). resultSize is the
	// type's size.
	decRun     func(i, n int, body []byte, step int) int
	resultSize int
	// each is called once per item that finishes (err nil or not), from a
	// collector goroutine, unless the call is already finished.
	each     func(i int, err error)
	failFast bool
	// ended, if set, runs once when cancel finishes the call, with the
	// reason: its missing items will never come.
	ended func(error)
	// owner, set by submit, is the pool running the call: its abortCall
	// runs once when the call finishes early (failed or cancelled), so
	// that workers stop running its items.
	owner *core

	mu        sync.Mutex
	remaining int
	err       error
	errIndex  int
	reason    error // what cancel finished the call with, if it did
	finished  atomic.Bool
	done      chan struct{}
	unwatch   func() bool // stops the caller's context watch, if any

	// sentTo is the worker a single-item call was last sent to, for its
	// caller to attend (attend.go).
	sentTo atomic.Pointer[slot]
}

// watch cancels the call when ctx ends first.
func (c *call) watch(ctx context.Context) {
	if ctx.Done() == nil {
		return // never ends: nothing to watch
	}
	stop := context.AfterFunc(ctx, func() { c.cancel(context.Cause(ctx)) })
	c.mu.Lock()
	if c.finished.Load() {
		c.mu.Unlock()
		stop()
		return
	}
	c.unwatch = stop
	c.mu.Unlock()
}

func newCall(e *entry, cfg callConfig, args *encoded) *call {
	n := args.len()
	return &call{e: e, cfg: cfg, n: n, args: args, remaining: n, errIndex: -1, done: make(chan struct{})}
}

// item records that item i finished with err.
func (c *call) item(i int, err error) {
	t := tally{c: c}
	t.add(i, err)
	t.flush()
}

// tally gathers the outcomes of one result message's items, so that the
// call's lock is taken once per message, not once per item.
type tally struct {
	c        *call
	done     int
	err      error // the failure of lowest index among them
	errIndex int
}

func (t *tally) add(i int, err error) {
	if t.c.finished.Load() {
		return
	}
	if t.c.each != nil {
		t.c.each(i, err)
	}
	t.done++
	if err != nil && (t.err == nil || i < t.errIndex) {
		t.err, t.errIndex = err, i
	}
	if t.c.cfg.progress != nil {
		t.flush() // Progress promises a call per task
	}
}

// addOK counts n items that succeeded, for a call with neither each nor
// Progress (which want a call per item).
func (t *tally) addOK(n int) { t.done += n }

// flush records the gathered outcomes in the call.
func (t *tally) flush() {
	c := t.c
	if t.done == 0 || c.finished.Load() {
		return
	}
	c.mu.Lock()
	if t.err != nil && (c.err == nil || t.errIndex < c.errIndex) {
		c.err, c.errIndex = t.err, t.errIndex
	}
	c.remaining -= t.done
	if c.cfg.progress != nil {
		c.cfg.progress(c.n-c.remaining, c.n) // under mu: one call at a time, done rising
	}
	early := c.remaining > 0 && t.err != nil && c.failFast
	finished := (c.remaining == 0 || early) && c.finishLocked()
	c.mu.Unlock()
	t.done, t.err = 0, nil
	if finished && early && c.owner != nil {
		c.owner.abortCall(c)
	}
}

// cancel finishes the call with err unless it finished already.
func (c *call) cancel(err error) {
	c.mu.Lock()
	finished := false
	if !c.finished.Load() {
		if c.err == nil {
			c.err = err
		}
		c.reason = err
		finished = c.finishLocked()
	}
	c.mu.Unlock()
	if finished && c.owner != nil {
		c.owner.abortCall(c)
	}
	if finished && c.ended != nil {
		c.ended(err)
	}
}

// cancelled returns the error cancel finished the call with (or the
// call's error); only valid once done is closed.
func (c *call) cancelled() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason != nil {
		return c.reason
	}
	if c.err != nil {
		return c.err
	}
	return ErrTerminated // not reached: cancel always gives a reason
}

// finishLocked marks the call finished and releases what only running
// items needed; it reports whether this call did it.
func (c *call) finishLocked() bool {
	if !c.finished.CompareAndSwap(false, true) {
		return false
	}
	// The arguments are not needed any more, and the caller must not see
	// them kept alive by a pool that outlives the call.
	c.args = nil
	if c.unwatch != nil {
		c.unwatch() // does not wait for the watch: it may be what finishes c
		c.unwatch = nil
	}
	close(c.done)
	return true
}

// ghost returns a finished call that stands in for c in its chunks still
// running after c finished early: it names the same function and settings
// for errors and timeouts but holds none of c's arguments or results.
func (c *call) ghost() *call {
	g := &call{e: c.e, cfg: c.cfg, n: c.n, errIndex: -1, reason: c.reason, done: make(chan struct{})}
	g.cfg.progress = nil
	g.finished.Store(true)
	close(g.done)
	return g
}

// chunk is items lo..hi-1 of a call, sent as one task message.
type chunk struct {
	c        *call    // guarded by p.mu once sent: abortCall swaps in a ghost
	args     *encoded // c.args when the chunk was made: c.args is dropped when c finishes
	lo, hi   int
	attempts int       // times a worker died running it
	job      uint64    // set when a worker takes it; unique in the pool
	seq      uint64    // the link's send count for its message, once sent
	sent     bool      // its message went into the link
	started  time.Time // when it became its worker's running chunk
	// cancelAt is when its time ran out and its RegisterCtx tasks were
	// asked to stop (guarded by p.mu): what it reports from then on is a
	// timeout.
	cancelAt time.Time
	// pull, if set, makes this the participation of one worker in a
	// pulled call (board.go): lo..hi is the whole call, job the board's.
	pull *pulled
}

// encoded holds the encoded arguments of a call back to back. Encoding at
// submission makes the caller free to reuse its slice once ApplyAsync or
// MapAsync returns, and tells the chunker each item's size.
type encoded struct {
	buf  []byte
	ends []int // item i is buf[ends[i-1]:ends[i]], unless stride is set
	// stride > 0: every item is stride bytes, item i at buf[i*stride:]
	// (fixed-size raw arguments, encoded in one copy).
	stride int

	// one holds ends for a single argument (Apply): an allocation saved.
	one [1]int
}

func (a *encoded) len() int {
	if a.stride > 0 {
		return len(a.buf) / a.stride
	}
	return len(a.ends)
}

// end returns the offset just past item i (0 for i = -1).
func (a *encoded) end(i int) int {
	switch {
	case i < 0:
		return 0
	case a.stride > 0:
		return (i + 1) * a.stride
	}
	return a.ends[i]
}

func (a *encoded) item(i int) []byte { return a.buf[a.end(i-1):a.end(i)] }

// bytes returns the encoded size of items lo..hi-1.
func (a *encoded) bytes(lo, hi int) int {
	if hi <= lo {
		return 0
	}
	return a.end(hi-1) - a.end(lo-1)
}

// fit returns how many of the k items from lo fit in limit bytes: at
// least one.
func (a *encoded) fit(lo, k, limit int) int {
	n := 1
	for n < k && a.bytes(lo, lo+n+1) <= limit {
		n++
	}
	return n
}

// encodeSlice encodes a call's arguments: fixed-size raw types in one copy,
// others one by one (see encodeArgs).
func encodeSlice[A any](e *entry, argc codec.Codec[A], args []A) (*encoded, error) {
	if size := argc.Size(); size > 0 && size <= maxValue {
		buf, _ := argc.AppendFixed(make([]byte, 0, len(args)*size), args)
		return &encoded{buf: buf, stride: size}, nil
	}
	return encodeArgs(e, len(args), func(dst []byte, i int) ([]byte, error) { return argc.Append(dst, args[i]) })
}

// encodeArgs encodes n arguments with enc. An argument that fails to
// encode, or encodes to more than maxValue bytes, fails the whole call: a
// *TaskError with the item's index.
func encodeArgs(e *entry, n int, enc func(dst []byte, i int) ([]byte, error)) (*encoded, error) {
	a := new(encoded)
	if n == 1 {
		a.ends = a.one[:0]
	} else {
		a.ends = make([]int, 0, n)
	}
	for i := range n {
		if err := a.add(e, i, func(dst []byte) ([]byte, error) { return enc(dst, i) }); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// add appends one argument, item index of its call, encoded by enc. An
// argument that fails to encode, or encodes to more than maxValue bytes,
// is not added: the error is a *TaskError with the index.
func (a *encoded) add(e *entry, index int, enc func(dst []byte) ([]byte, error)) error {
	start := len(a.buf)
	buf, err := enc(a.buf)
	if size := len(buf) - start; errors.Is(err, codec.ErrTooLarge) || size > maxValue {
		a.buf = buf[:start]
		return &TaskError{Func: e.name, Index: index, Err: fmt.Errorf("%w: the argument encodes to more than the %d-byte limit; pass bulk data in an shm.Array", ErrTooLarge, maxValue)}
	}
	if err != nil {
		a.buf = buf[:start]
		return &TaskError{Func: e.name, Index: index, Err: fmt.Errorf("encode argument: %w", err)}
	}
	a.buf = buf
	a.ends = append(a.ends, len(a.buf))
	return nil
}

// maxChunk bounds every chunk's item count. The wire format's item count is
// a u16: a chunk must stay below 1<<16 items.
const maxChunk = 4096

// chunkSizes yields (first index, length) for the chunks of a call's
// items, none over maxChunk items nor, unless it is a single item, over
// softMessage bytes. A fixed size gives equal chunks (cut by bytes where
// needed). Size 0 gives guided self-scheduling, as OpenMP's
// schedule(guided): each chunk is the remaining items divided by twice the
// worker count, so the first chunks are large (few messages for many tiny
// tasks) and the last ones hold a single item (no worker is left with a
// long tail while the others idle). Python's fixed n/(4×workers) can leave
// one worker a whole chunk behind.
func chunkSizes(args *encoded, size, workers int) iter.Seq2[int, int] {
	n := args.len()
	return func(yield func(int, int) bool) {
		for lo := 0; lo < n; {
			k := size
			if k <= 0 {
				k = min(maxChunk, max(1, (n-lo)/(2*max(workers, 1))))
			}
			k = min(k, maxChunk, n-lo)
			if args.bytes(lo, lo+k) > softMessage {
				k = args.fit(lo, k, softMessage)
			}
			if !yield(lo, k) {
				return
			}
			lo += k
		}
	}
}
