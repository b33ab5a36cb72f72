package pool

import (
	"errors"
	"fmt"
	"strconv"
)

// backend starts the processes behind worker slots. It is the seam
// between the pool core (dispatch, bookkeeping, failure handling) and
// where a worker runs: the local backend re-executes this binary on a
// pinned CPU; a remote one would lease a worker on another machine. The
// core never looks past proc and link.
type backend interface {
	// start starts a worker for slot and returns once it is ready to take
	// task messages over its link.
	start(slot int) (proc, error)
}

// proc is one started worker as the core sees it.
type proc interface {
	// link carries its task and result messages.
	link() link
	// exited is closed once the worker has ended.
	exited() <-chan struct{}
	// kill ends the worker now; it is idempotent and harmless after exit.
	kill()
	// reap waits for the end, releases what the worker held besides its
	// link, and says how it ended: nil for a clean exit, else an error
	// (for a local worker, the *exec.ExitError).
	reap() error
	// id names the worker in errors and statistics.
	id() workerID
}

// workerID names a worker: a pid on this machine, or a node and the pid
// there.
type workerID struct {
	Node string // "" for this machine
	Pid  int
}

func (id workerID) String() string {
	if id.Node == "" {
		return strconv.Itoa(id.Pid)
	}
	return id.Node + "/" + strconv.Itoa(id.Pid)
}

// localBackend runs each worker as this binary re-executed (bootstrap*.go),
// linked to the parent by a shared-memory segment (link.go).
type localBackend struct {
	cfg   Config
	place []Placement
}

type localProc struct {
	c *child
	l *shmLink
}

func (b *localBackend) start(slot int) (proc, error) {
	l, spec, err := newShmLink(slot)
	if err != nil {
		return nil, err
	}
	s := setup{maxTasks: b.cfg.MaxTasksPerWorker, initializer: b.cfg.Initializer.Name(), transport: spec}
	c, err := spawnChild(s, b.place[slot].CPU, l)
	if err != nil {
		return nil, errors.Join(err, l.close())
	}
	return &localProc{c: c, l: l}, nil
}

func (p *localProc) link() link              { return p.l }
func (p *localProc) exited() <-chan struct{} { return p.c.exited }
func (p *localProc) kill()                   { p.c.kill() }
func (p *localProc) reap() error             { return p.c.reap() }
func (p *localProc) id() workerID            { return workerID{Pid: p.c.pid} }

// startError wraps the error of a worker that could not be started.
func startError(slot int, err error) error {
	return fmt.Errorf("pool: start worker %d: %w", slot, err)
}
