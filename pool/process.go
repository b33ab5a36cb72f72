package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/mproc/mproc/internal/codec"
)

// Process runs one registered function in a child process of its own,
// like Python's multiprocessing.Process. The child's stdout and stderr are
// this process's. Its methods are safe for concurrent use.
type Process struct {
	c    *child
	name string
	once sync.Once
	err  error
}

// Start runs f(arg) in a new child process and returns once the child is
// running (at most about a second: a child that never reaches Init is
// reported as ErrNoInit). arg may hold shm.Array and ipc.Queue handles: the
// child attaches their segments on first use. The encoded argument must fit
// in 64 KiB; pass larger data in an shm.Array.
func Start[A, R any](f Func[A, R], arg A) (*Process, error) {
	if f.e == nil {
		return nil, errors.New("pool: Start with a zero Func")
	}
	argc := codec.For[A]()
	msg, err := encodeTask([]byte{opTask}, f.e, 0, 0, 1, func(dst []byte, _ int) ([]byte, error) {
		return argc.Append(dst, arg)
	})
	if err != nil {
		return nil, err
	}
	if len(msg) > ctlMaxMessage {
		return nil, fmt.Errorf("pool: Start: argument encodes to %d bytes, over the %d-byte limit; pass bulk data in an shm.Array", len(msg), ctlMaxMessage-hdrLen-1)
	}
	c, err := spawnChild(context.Background(), setup{process: true}, -1, nil)
	if err != nil {
		return nil, err
	}
	if err := c.ctl.send(msg, nil); err != nil {
		c.kill()
		c.reap()
		return nil, err
	}
	return &Process{c: c, name: f.e.name}, nil
}

// Pid returns the child's process id.
func (p *Process) Pid() int { return p.c.pid }

// Wait waits for the child to exit and reaps it. It returns nil if the
// function returned nil; a *TaskError if it returned an error or panicked;
// a *WorkerError (wrapping *exec.ExitError) if the child died otherwise,
// for example killed by a signal.
func (p *Process) Wait() error {
	p.once.Do(func() {
		werr := p.c.reap()
		select {
		case msg := <-p.c.results:
			p.err = processResult(msg, p.name, p.c.pid)
			if p.err != nil || werr == nil {
				return
			}
		default:
		}
		if werr != nil {
			we := newWorkerError(p.c.pid, werr)
			we.Func = p.name
			p.err = we
		}
	})
	return p.err
}

// Kill kills the child with SIGKILL without waiting for it; call Wait to
// reap it. Killing an exited child is not an error.
func (p *Process) Kill() error {
	select {
	case <-p.c.exited:
		return nil
	default:
	}
	err := p.c.cmd.Process.Kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// processResult turns a Process's result message into its error, if any.
func processResult(msg []byte, name string, pid int) error {
	h, body, err := parseHeader(msg)
	if err != nil || h.count < 1 || len(body) < 1 {
		return nil // no verdict: the exit status decides
	}
	st := body[0]
	item, _, err := nextItem(body[1:])
	if err != nil {
		return nil
	}
	return itemError(st, item, name, 0, pid)
}
