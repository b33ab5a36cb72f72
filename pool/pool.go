package pool

import (
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Pool is a set of worker processes running registered functions, like
// Python's multiprocessing.Pool. Create it with New; submit with Apply,
// Map, ApplyAsync, MapAsync, Imap and ImapUnordered; stop it with Close or
// Terminate. A Pool is safe for concurrent use by many goroutines.
// Callers block on Go channels only, never on shared-memory futexes.
//
// A Pool that becomes unreachable without Close or Terminate is terminated
// by the garbage collector, as a safety net: call Close.
type Pool struct {
	core *core
}

var _ io.Closer = (*Pool)(nil)

// core is a pool's state: the worker goroutines hold it, never the Pool,
// so an unreachable Pool can be cleaned up while they run.
type core struct {
	cfg     Config
	place   []Placement
	backend backend

	mu      sync.Mutex
	pending []*chunk // FIFO; requeued chunks go first
	slots   []*slot
	state   int // open, closing, terminated
	nextJob uint64
	// broken is set once no worker is left and none can be started: it
	// wraps the last start-up failure.
	broken error
	// Pull boards (board.go): every one made, and those no call uses.
	allBoards, freeBoards []*board
	// releaseErrs holds errors from releasing workers' links (the first
	// few), which Close reports.
	releaseErrs []error

	wg        sync.WaitGroup // slot goroutines
	done      chan struct{}  // closed when every slot goroutine returned
	stopOnce  sync.Once
	watchOnce sync.Once     // starts the timeout watcher on the first call with a timeout
	timeouts  chan struct{} // closed to stop the timeout watcher
}

const (
	stateOpen = iota
	stateClosing
	stateTerminated
)

// New starts a pool and returns once every worker is ready (typically a few
// milliseconds; a worker whose main lacks Init fails New with ErrNoInit as
// soon as it exits, one that hangs before Init after 5 s). cfg may be nil.
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
	p, err := start(c, place, &localBackend{cfg: c, place: place})
	if err != nil {
		return nil, err
	}
	pool := &Pool{core: p}
	runtime.AddCleanup(pool, func(p *core) { go p.terminate() }, p)
	return pool, nil
}

// start starts every slot of a new core in parallel and returns once all
// are live, or stops them all on the first failure.
func start(cfg Config, place []Placement, b backend) (*core, error) {
	p := &core{cfg: cfg, place: place, backend: b, done: make(chan struct{}), timeouts: make(chan struct{})}
	p.slots = make([]*slot, cfg.Workers)
	errs := make([]error, cfg.Workers)
	var wg sync.WaitGroup
	for i := range p.slots {
		w := &slot{p: p, idx: i, kick: make(chan struct{}, 1)}
		p.slots[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.start()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range p.slots {
			if w.proc != nil {
				w.proc.kill()
				err = errors.Join(err, w.proc.reap(), w.l.close())
			}
		}
		return nil, err
	}
	for _, w := range p.slots {
		p.wg.Add(1)
		go w.run()
	}
	go func() {
		p.wg.Wait()
		close(p.done)
	}()
	return p, nil
}

// timeoutGrace is how long a RegisterCtx task whose time is up has, once
// its context is cancelled, to return before its worker is killed.
const timeoutGrace = 100 * time.Millisecond

// watchTimeouts kills workers whose running chunk overran its call's task
// timeout. A chunk of a RegisterCtx function is first asked to stop (its
// context is cancelled through the abort flag) and killed only if it is
// still running timeoutGrace later. It starts with the first call that
// has a timeout.
func (p *core) watchTimeouts() {
	tick := 5 * time.Millisecond
	if p.cfg.TaskTimeout > 0 {
		tick = min(max(p.cfg.TaskTimeout/8, tick), timeoutGrace/4)
	}
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
		for _, w := range p.slots {
			if len(w.inflight) == 0 || w.proc == nil || w.timedOut != nil {
				continue
			}
			ch := w.inflight[0]
			limit := ch.c.cfg.timeout * time.Duration(ch.hi-ch.lo)
			if limit <= 0 || ch.started.IsZero() || now.Sub(ch.started) <= limit {
				continue
			}
			switch {
			case ch.c.e.ctx && ch.sent && ch.cancelAt.IsZero() && w.l != nil:
				ch.cancelAt = now
				w.l.abort(ch.seq, ch.job)
			case !ch.cancelAt.IsZero() && now.Sub(ch.cancelAt) < timeoutGrace:
			default:
				w.timedOut = ch
				w.proc.kill()
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
// background; call Join again or Terminate. If the pool lost every worker
// and could not start new ones, Join returns that error (the calls it
// failed got it too).
func (p *Pool) Join(ctx context.Context) error {
	return p.core.join(ctx)
}

func (p *core) join(ctx context.Context) error {
	p.mu.Lock()
	if p.state == stateOpen {
		p.state = stateClosing
	}
	p.mu.Unlock()
	p.kickAll()
	select {
	case <-p.done:
		p.stopWatchers()
		p.mu.Lock()
		defer p.mu.Unlock()
		return errors.Join(append([]error{p.broken}, p.releaseErrs...)...)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Terminate kills every worker now, fails pending and running tasks with
// ErrTerminated (a running RegisterCtx task first sees its context
// cancelled, and has 100 ms to return), and reaps the workers before it returns. Calling it again,
// or after Close, is harmless. It returns what releasing the workers'
// resources failed with, if anything.
func (p *Pool) Terminate() error {
	return p.core.terminate()
}

// releaseFailed keeps err for Close and Terminate to report.
func (p *core) releaseFailed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.releaseErrs) < 8 {
		p.releaseErrs = append(p.releaseErrs, err)
	}
}

func (p *core) terminate() error {
	p.mu.Lock()
	p.state = stateTerminated
	pending := p.pending
	p.pending = nil
	var running []*call
	for _, w := range p.slots {
		for _, ch := range w.inflight {
			if ch.sent && !slices.Contains(running, ch.c) {
				running = append(running, ch.c)
			}
		}
	}
	p.mu.Unlock()
	for _, ch := range pending {
		ch.c.cancel(ErrTerminated)
	}
	// Cancelled as Result.Cancel would: running RegisterCtx tasks see
	// their context end, and have timeoutGrace to return before their
	// workers are killed.
	for _, c := range running {
		c.cancel(ErrTerminated)
	}
	for deadline := time.Now().Add(timeoutGrace); p.contextTasks() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	p.mu.Lock()
	for _, w := range p.slots {
		if w.proc != nil {
			w.proc.kill()
		}
	}
	p.mu.Unlock()
	<-p.done
	p.stopWatchers()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.releaseErrs...)
}

// contextTasks reports whether a RegisterCtx task is still running.
func (p *core) contextTasks() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.slots {
		if w.proc != nil && slices.ContainsFunc(w.inflight, func(ch *chunk) bool { return ch.sent && ch.c.e.ctx }) {
			return true
		}
	}
	return false
}

// stopWatchers runs once every slot goroutine has returned: it stops the
// timeout watcher and releases the pull boards, which no worker maps now.
func (p *core) stopWatchers() {
	p.stopOnce.Do(func() {
		close(p.timeouts)
		p.mu.Lock()
		boards := p.allBoards
		p.allBoards, p.freeBoards = nil, nil
		p.mu.Unlock()
		for _, b := range boards {
			if err := b.close(); err != nil {
				p.releaseFailed(err)
			}
		}
	})
}

// Stats returns a snapshot of every worker slot: its process, the tasks
// it ran, where its time went and its slowest task messages. It is safe
// to call at any time, also after Close.
func (p *Pool) Stats() []WorkerStats {
	c := p.core
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]WorkerStats, len(c.slots))
	now := time.Now()
	for i, w := range c.slots {
		up := w.livedFor
		if !w.liveSince.IsZero() {
			up += now.Sub(w.liveSince)
		}
		busy := time.Duration(w.busy.Load())
		out[i] = WorkerStats{
			Worker:   i,
			Pid:      w.id.Pid,
			CPU:      c.place[i].CPU,
			Tasks:    w.tasks.Load(),
			Busy:     busy,
			Idle:     max(up-busy, 0),
			StartUp:  w.startup,
			Restarts: w.restarts,
			Slowest:  slices.Clone(w.slowest),
		}
	}
	return out
}

// Layout returns where each worker runs: worker -> CPU -> core.
func (p *Pool) Layout() []Placement {
	return append([]Placement(nil), p.core.place...)
}
