package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// depth is how many task messages may be in flight per worker: one
// running, one waiting in its ring, so a worker never idles between
// messages yet a slow task holds back at most one message behind it.
const depth = 2

// Pool is a set of worker processes running registered functions, like
// Python's multiprocessing.Pool. Create it with New; submit with Apply,
// Map, ApplyAsync, MapAsync, Imap and ImapUnordered; stop it with Close or
// Terminate. A Pool is safe for concurrent use by many goroutines.
// Callers block on Go channels only, never on shared-memory futexes.
type Pool struct {
	cfg   Config
	place []Placement

	mu      sync.Mutex
	pending []*chunk // FIFO; requeued chunks go first
	workers []*worker
	state   int // open, closing, terminated
	nextJob uint64

	wg       sync.WaitGroup // worker slot goroutines
	done     chan struct{}  // closed when every slot goroutine returned
	stopOnce sync.Once
	timeouts chan struct{} // closed to stop the timeout watcher
}

var _ io.Closer = (*Pool)(nil)

const (
	stateOpen = iota
	stateClosing
	stateTerminated
)

// call is one Apply or Map call: n items sharing a function.
type call struct {
	e   *entry
	n   int
	enc func(dst []byte, i int) ([]byte, error)
	dec func(i int, b []byte) error // stores item i's result
	// each is called once per item that finishes (err nil or not), from a
	// collector goroutine, unless the call is already finished.
	each     func(i int, err error)
	failFast bool

	mu        sync.Mutex
	remaining int
	err       error
	errIndex  int
	reason    error // what cancel finished the call with, if it did
	finished  atomic.Bool
	done      chan struct{}
}

func newCall(e *entry, n int) *call {
	return &call{e: e, n: n, remaining: n, errIndex: -1, done: make(chan struct{})}
}

// item records that item i finished with err.
func (c *call) item(i int, err error) {
	if c.finished.Load() {
		return
	}
	if c.each != nil {
		c.each(i, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && (c.err == nil || i < c.errIndex) {
		c.err, c.errIndex = err, i
	}
	c.remaining--
	if c.remaining == 0 || (err != nil && c.failFast) {
		c.finishLocked()
	}
}

// cancel finishes the call with err unless it finished already.
func (c *call) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.finished.Load() {
		if c.err == nil {
			c.err = err
		}
		c.reason = err
		c.finishLocked()
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

func (c *call) finishLocked() {
	if c.finished.CompareAndSwap(false, true) {
		close(c.done)
	}
}

// chunk is items lo..hi-1 of a call, sent as one message.
type chunk struct {
	c        *call
	lo, hi   int
	attempts int // times a worker died running it
	job      uint64
	started  time.Time // when it became its worker's running chunk
}

// worker is one slot: a process, replaced when it dies.
type worker struct {
	p    *Pool
	idx  int
	cpu  int
	kick chan struct{}

	sendMu  sync.Mutex // held while producing into the task ring
	sendBuf []byte     // guarded by sendMu
	// handoff (guarded by sendMu) says that sendBuf holds a message an
	// inline pump could not send without waiting: the sender goroutine
	// sends it before anything else.
	handoff bool

	// guarded by p.mu
	c        *child
	l        link
	inflight []*chunk // in send order; [0] is running
	retiring bool
	timedOut *chunk
	stopSent bool
	pid      int
	restarts int

	tasks atomic.Int64
	busy  atomic.Int64
}

// New starts a pool and returns once every worker is ready (typically a few
// milliseconds; a worker that never reaches Init fails New with ErrNoInit
// within about a second). cfg may be nil.
func New(cfg *Config) (*Pool, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkCanSpawn(); err != nil {
		return nil, err
	}
	place, err := layout(c)
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: c, place: place, done: make(chan struct{}), timeouts: make(chan struct{})}
	p.workers = make([]*worker, c.Workers)
	errs := make([]error, c.Workers)
	var wg sync.WaitGroup
	for i := range p.workers {
		w := &worker{p: p, idx: i, cpu: place[i].CPU, kick: make(chan struct{}, 1)}
		p.workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.spawn()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range p.workers {
			if w.c != nil {
				w.c.kill()
				w.c.reap()
				w.l.close()
			}
		}
		return nil, err
	}
	for _, w := range p.workers {
		p.wg.Add(1)
		go w.run()
	}
	go func() {
		p.wg.Wait()
		close(p.done)
	}()
	if c.TaskTimeout > 0 {
		go p.watchTimeouts()
	}
	return p, nil
}

// spawn starts the slot's process and waits for its handshake.
func (w *worker) spawn() error {
	p := w.p
	l, files, spec, err := p.cfg.transport.pair(w.idx)
	if err != nil {
		return err
	}
	s := setup{maxTasks: p.cfg.MaxTasksPerWorker, initializer: p.cfg.Initializer, transport: spec}
	c, err := spawnChild(context.Background(), s, w.cpu, files)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		l.close()
		return err
	}
	p.mu.Lock()
	w.c, w.l, w.pid = c, l, c.pid
	w.retiring, w.timedOut, w.stopSent = false, nil, false
	if p.state == stateTerminated {
		c.kill() // Terminate ran while it started
	}
	p.mu.Unlock()
	return nil
}

// run owns the slot: it collects results until the process ends, settles
// its in-flight tasks, and starts a replacement while the pool needs one.
func (w *worker) run() {
	p := w.p
	defer p.wg.Done()
	failures := 0
	for {
		w.serveOne()
		p.mu.Lock()
		keep := p.state == stateOpen || (p.state == stateClosing && len(p.pending) > 0)
		p.mu.Unlock()
		if !keep {
			p.kickAll() // a closing pool may now be idle
			return
		}
		for {
			err := w.spawn()
			if err == nil {
				failures = 0
				break
			}
			failures++
			if failures >= 5 || !p.open() {
				// Cannot replace this worker: fail what only it could run
				// if no other worker is left.
				p.failIfNoWorkers(err)
				return
			}
			time.Sleep(time.Duration(failures) * 50 * time.Millisecond)
		}
		p.mu.Lock()
		w.restarts++
		p.mu.Unlock()
	}
}

// serveOne runs the sender and collector for the current process and
// returns once it is dead and reaped.
func (w *worker) serveOne() {
	p := w.p
	p.mu.Lock()
	c, l := w.c, w.l
	p.mu.Unlock()

	stop := make(chan struct{})
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		w.sendLoop(stop)
	}()
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		// When the process exits, let the collector drain and return.
		<-c.exited
		l.peerGone()
	}()
	w.kickSelf()
	w.collect(l)
	// The link is closed or broken: the process is gone or going.
	c.kill()
	werr := c.reap()
	close(stop)
	<-senderDone
	<-monDone
	// Detach the link under sendMu so that no inline pump still uses it,
	// then release it: nobody touches the rings any more.
	w.sendMu.Lock()
	p.mu.Lock()
	w.c, w.l, w.pid = nil, nil, 0
	p.mu.Unlock()
	w.handoff = false // its chunk is in inflight: settle decides
	w.sendMu.Unlock()
	l.close()
	w.settle(werr, c.pid)
}

// sendLoop gives the worker chunks while it has room.
func (w *worker) sendLoop(stop <-chan struct{}) {
	for {
		select {
		case <-w.kick:
		case <-stop:
			return
		}
		w.pump()
	}
}

// pump sends chunks to the worker while it has room. It runs on the
// worker's sender goroutine, the only one that may wait for room in the
// task ring. sendMu makes it the ring's single producer and keeps the link
// open while it is used.
func (w *worker) pump() {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	w.pumpLocked(depth, false)
}

// pumpInline is pump run on a submitting goroutine, with at most limit
// chunks in flight on the worker. It never waits (callers block on Go
// channels only): if the sender holds sendMu it only kicks it, and a
// message that does not fit in the ring now (a full ring, a fragmented
// message) is handed to the sender goroutine. Sending inline when the
// worker is idle saves a goroutine hand-off per Apply.
func (w *worker) pumpInline(limit int) {
	if !w.sendMu.TryLock() {
		w.kickSelf() // its pump is busy: make it look again
		return
	}
	defer w.sendMu.Unlock()
	w.pumpLocked(limit, true)
}

// pumpLocked sends with sendMu held; inline says it must not wait.
func (w *worker) pumpLocked(limit int, inline bool) {
	p := w.p
	if w.handoff {
		if inline {
			w.kickSelf() // keep the order: the sender goes first
			return
		}
		w.handoff = false
		p.mu.Lock()
		l := w.l
		p.mu.Unlock()
		if l == nil || l.send(context.Background(), w.sendBuf) != nil {
			return // the collector sees the death and settles
		}
	}
	for {
		ch, l, stopNow := p.take(w, limit)
		if l == nil {
			return
		}
		switch {
		case stopNow:
			w.sendBuf = appendHeader(w.sendBuf[:0], msgHeader{kind: kindStop})
		case ch == nil:
			return
		default:
			var err error
			w.sendBuf, err = encodeTask(w.sendBuf[:0], ch.c.e, ch.job, ch.lo, ch.hi-ch.lo, ch.c.enc)
			if err != nil {
				p.drop(w, ch)
				ch.c.cancel(err)
				continue
			}
		}
		var err error
		if inline {
			if err = l.trySend(w.sendBuf); err == errWouldBlock {
				w.handoff = true
				w.kickSelf()
				return
			}
		} else {
			err = l.send(context.Background(), w.sendBuf)
		}
		if err != nil || stopNow {
			return // on error, the collector sees the death and settles
		}
	}
}

// take pops the next chunk for w, or reports that w should be stopped
// because the pool is closing and idle.
func (p *Pool) take(w *worker, limit int) (ch *chunk, l link, stop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l = w.l
	if l == nil || w.retiring || w.timedOut != nil || w.stopSent {
		return nil, nil, false
	}
	if p.state == stateClosing && len(p.pending) == 0 && len(w.inflight) == 0 {
		w.stopSent = true
		return nil, l, true
	}
	for len(w.inflight) < limit && len(p.pending) > 0 {
		ch = p.pending[0]
		p.pending[0] = nil
		p.pending = p.pending[1:]
		if ch.c.finished.Load() {
			ch = nil
			continue
		}
		p.nextJob++
		ch.job = p.nextJob
		if len(w.inflight) == 0 {
			ch.started = time.Now()
		}
		w.inflight = append(w.inflight, ch)
		return ch, l, false
	}
	return nil, l, false
}

// drop removes a chunk that could not be sent.
func (p *Pool) drop(w *worker, ch *chunk) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range w.inflight {
		if x == ch {
			w.inflight = append(w.inflight[:i], w.inflight[i+1:]...)
			break
		}
	}
}

// collect reads result messages until the link ends.
func (w *worker) collect(l link) {
	p := w.p
	var buf []byte
	for {
		var err error
		buf, err = l.recv(context.Background(), buf)
		if err != nil {
			return
		}
		h, body, err := parseHeader(buf)
		if err != nil || h.kind != kindResult {
			return // a broken peer: treat as dead
		}
		p.mu.Lock()
		var ch *chunk
		for i, x := range w.inflight {
			if x.job == h.job {
				ch = x
				w.inflight = append(w.inflight[:i], w.inflight[i+1:]...)
				break
			}
		}
		if len(w.inflight) > 0 && w.inflight[0].started.IsZero() {
			w.inflight[0].started = time.Now()
		}
		if h.flags&flagRetire != 0 {
			w.retiring = true
		}
		pid := w.pid
		p.mu.Unlock()
		if ch == nil {
			continue
		}
		w.tasks.Add(int64(h.count))
		w.busy.Add(int64(h.extra))
		if rest := w.deliver(ch, h.count, body, pid); rest != nil {
			if h.flags&flagRetire == 0 {
				// Items missing without the retire flag: a broken peer.
				// Give the rest back as this worker's running chunk so
				// that settle counts an attempt, and end the worker.
				p.mu.Lock()
				w.inflight = append([]*chunk{rest}, w.inflight...)
				p.mu.Unlock()
				return
			}
			// Skipped by a retiring worker: not an attempt.
			p.requeue(rest)
		}
		if p.moreToSend() {
			w.kickSelf()
		}
		// The caller just readied sits in this P's run queue; the next
		// Get would spin on the ring (not yielding the P) and leave it for
		// another P, whose wake-up is a futex wake of an idle CPU (tens of
		// µs on a VM). Let it run here first.
		runtime.Gosched()
	}
}

// deliver hands a result message's items to their call and returns the
// items the message lacks, if any, as a chunk.
func (w *worker) deliver(ch *chunk, count int, body []byte, pid int) (rest *chunk) {
	c := ch.c
	n := min(count, ch.hi-ch.lo)
	for k := 0; k < n; k++ {
		if len(body) < 1 {
			n = k
			break
		}
		st := body[0]
		item, rest, err := nextItem(body[1:])
		if err != nil {
			n = k
			break
		}
		body = rest
		if c.finished.Load() {
			continue
		}
		i := ch.lo + k
		if st == stOK {
			if err := c.dec(i, item); err != nil {
				c.item(i, &TaskError{Func: c.e.name, Index: i, Pid: pid, Err: fmt.Errorf("decode result: %w", err)})
				continue
			}
			c.item(i, nil)
			continue
		}
		c.item(i, itemError(st, item, c.e.name, i, pid))
	}
	if ch.lo+n < ch.hi {
		ch.lo += n // ch is ours: the collector took it out of inflight
		return ch
	}
	return nil
}

// settle decides the fate of the chunks in flight on a process that ended.
func (w *worker) settle(werr error, pid int) {
	p := w.p
	p.mu.Lock()
	chunks := w.inflight
	w.inflight = nil
	planned := w.retiring || w.stopSent
	timedOut := w.timedOut
	terminated := p.state == stateTerminated
	p.mu.Unlock()
	for k, ch := range chunks {
		c := ch.c
		switch {
		case c.finished.Load():
		case terminated:
			c.cancel(ErrTerminated)
		case ch == timedOut:
			for i := ch.lo; i < ch.hi; i++ {
				c.item(i, &TaskError{Func: c.e.name, Index: i, Pid: pid, Err: ErrTaskTimeout})
			}
		case planned || k > 0 || (timedOut != nil && ch != timedOut):
			// Never started: run it elsewhere, free of charge.
			p.requeue(ch)
		case ch.attempts < p.cfg.Retries:
			ch.attempts++
			p.requeue(ch)
		default:
			we := newWorkerError(pid, werr)
			we.Func, we.Index = c.e.name, ch.lo
			if !ch.started.IsZero() {
				we.After = time.Since(ch.started)
			}
			for i := ch.lo; i < ch.hi; i++ {
				e := *we
				e.Index = i
				c.item(i, &e)
			}
		}
	}
}

// requeue puts ch at the front of the queue, or fails its call with
// ErrTerminated once Terminate has run: Terminate cancelled what was
// queued when it ran, and nothing queued after it would ever be taken.
func (p *Pool) requeue(ch *chunk) {
	ch.started = time.Time{}
	p.mu.Lock()
	if p.state == stateTerminated {
		p.mu.Unlock()
		ch.c.cancel(ErrTerminated)
		return
	}
	p.pending = append([]*chunk{ch}, p.pending...)
	p.mu.Unlock()
	p.kickAll()
}

func (w *worker) kickSelf() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (p *Pool) kickAll() {
	for _, w := range p.workers {
		w.kickSelf()
	}
}

func (p *Pool) pendingEmpty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending) == 0
}

// moreToSend reports whether senders have work: queued chunks, or stop
// messages to send because the pool is closing.
func (p *Pool) moreToSend() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending) > 0 || p.state != stateOpen
}

func (p *Pool) open() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == stateOpen
}

// failIfNoWorkers fails every pending call when no worker is left to run it.
func (p *Pool) failIfNoWorkers(err error) {
	p.mu.Lock()
	for _, w := range p.workers {
		if w.c != nil {
			p.mu.Unlock()
			return
		}
	}
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, ch := range pending {
		ch.c.cancel(fmt.Errorf("pool: no worker left: %w", err))
	}
}

// submit queues a call, split into chunks of size items, or of guided
// sizes when size is 0 (see chunkSizes).
func (p *Pool) submit(c *call, size int) error {
	p.mu.Lock()
	if p.state != stateOpen {
		p.mu.Unlock()
		return ErrClosed
	}
	for lo, n := range chunkSizes(c.n, size, len(p.workers)) {
		p.pending = append(p.pending, &chunk{c: c, lo: lo, hi: lo + n})
	}
	p.mu.Unlock()
	// Hand work to idle workers from this goroutine when their sender is
	// free and the message fits now; otherwise (or for what is left) wake
	// their senders. The first
	// pass gives each worker one message so that a call of few chunks is
	// spread over the workers, not queued two-deep on the first one.
	for _, limit := range []int{1, depth} {
		for _, w := range p.workers {
			if p.pendingEmpty() {
				return nil
			}
			w.pumpInline(limit)
		}
	}
	return nil
}

// chunkSize is the chunk size for a Map-like call: Config.ChunkSize, 1 with
// a task timeout (so the timeout applies per task), else 0 for guided.
func (p *Pool) chunkSize() int {
	if p.cfg.ChunkSize > 0 {
		return p.cfg.ChunkSize
	}
	if p.cfg.TaskTimeout > 0 {
		return 1
	}
	return 0
}

// maxChunk bounds every chunk, and so the size of one task message. The
// wire format's item count is a u16: a chunk must stay below 1<<16 items.
const maxChunk = 4096

// chunkSizes yields (first index, length) for the chunks of n items, none
// over maxChunk. A fixed size gives equal chunks. Size 0 gives guided self-scheduling, as OpenMP's
// schedule(guided): each chunk is the remaining items divided by twice the
// worker count, so the first chunks are large (few messages for many tiny
// tasks) and the last ones hold a single item (no worker is left with a
// long tail while the others idle). Python's fixed n/(4×workers) can leave
// one worker a whole chunk behind.
func chunkSizes(n, size, workers int) iter.Seq2[int, int] {
	return func(yield func(int, int) bool) {
		for lo := 0; lo < n; {
			k := size
			if k <= 0 {
				k = min(maxChunk, max(1, (n-lo)/(2*max(workers, 1))))
			}
			k = min(k, maxChunk, n-lo)
			if !yield(lo, k) {
				return
			}
			lo += k
		}
	}
}

// watchTimeouts kills workers whose running chunk overran TaskTimeout.
func (p *Pool) watchTimeouts() {
	tick := max(p.cfg.TaskTimeout/8, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.timeouts:
			return
		}
		now := time.Now()
		p.mu.Lock()
		for _, w := range p.workers {
			if len(w.inflight) == 0 || w.c == nil || w.timedOut != nil {
				continue
			}
			ch := w.inflight[0]
			limit := p.cfg.TaskTimeout * time.Duration(ch.hi-ch.lo)
			if !ch.started.IsZero() && now.Sub(ch.started) > limit {
				w.timedOut = ch
				w.c.kill()
			}
		}
		p.mu.Unlock()
	}
}

// Close stops accepting work, waits for every submitted task to finish,
// stops the workers and reaps them. It is Join(context.Background()).
// Calling it again is harmless.
func (p *Pool) Close() error {
	return p.Join(context.Background())
}

// Join stops accepting work (as Close does) and waits until every task
// submitted before has finished and every worker has exited and been
// reaped, or ctx ends. After a ctx error the pool keeps closing in the
// background; call Join again or Terminate.
func (p *Pool) Join(ctx context.Context) error {
	p.mu.Lock()
	if p.state == stateOpen {
		p.state = stateClosing
	}
	p.mu.Unlock()
	p.kickAll()
	select {
	case <-p.done:
		p.stopWatchers()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Terminate kills every worker now, fails pending and running tasks with
// ErrTerminated, and reaps the workers before it returns. Calling it again,
// or after Close, is harmless.
func (p *Pool) Terminate() error {
	p.mu.Lock()
	p.state = stateTerminated
	pending := p.pending
	p.pending = nil
	for _, w := range p.workers {
		if w.c != nil {
			w.c.kill()
		}
	}
	p.mu.Unlock()
	for _, ch := range pending {
		ch.c.cancel(ErrTerminated)
	}
	<-p.done
	p.stopWatchers()
	return nil
}

func (p *Pool) stopWatchers() {
	p.stopOnce.Do(func() { close(p.timeouts) })
}

// Stats returns a snapshot of every worker slot.
func (p *Pool) Stats() []WorkerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]WorkerStats, len(p.workers))
	for i, w := range p.workers {
		out[i] = WorkerStats{
			Worker:   i,
			Pid:      w.pid,
			CPU:      w.cpu,
			Tasks:    w.tasks.Load(),
			Busy:     time.Duration(w.busy.Load()),
			Restarts: w.restarts,
		}
	}
	return out
}

// Layout returns where each worker runs: worker -> CPU -> core.
func (p *Pool) Layout() []Placement {
	return append([]Placement(nil), p.place...)
}
