package pool

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unicode/utf8"

	"github.com/mproc/mproc/internal/codec"
)

// Process runs one registered function in a child process of its own,
// like Python's multiprocessing.Process. The child's stdout and stderr are
// this process's. Its methods are safe for concurrent use.
//
// A Process that becomes unreachable before Wait is killed and reaped by
// the garbage collector, as a safety net: call Wait.
type Process struct {
	c    *child
	name string
	once sync.Once
	err  error
}

// Start runs f(arg) in a new child process and returns once the child is
// running (a child whose main lacks Init is reported as ErrNoInit when it
// exits, one that hangs before Init after 5 s). arg may hold shm.Array and ipc.Queue handles: the
// child attaches their segments on first use. The encoded argument must fit
// in 64 KiB; pass larger data in an shm.Array.
func Start[A, R any](f Func[A, R], arg A) (*Process, error) {
	if f.e == nil {
		return nil, errors.New("pool: Start with a zero Func")
	}
	argc := codec.For[A]()
	args, err := encodeArgs(f.e, 1, func(dst []byte, _ int) ([]byte, error) { return argc.Append(dst, arg) })
	if err != nil {
		return nil, err
	}
	msg := encodeTask([]byte{opTask}, f.e, 0, 0, args, 0, 1)
	if len(msg) > ctlMaxMessage {
		return nil, fmt.Errorf("pool: Start: argument encodes to %d bytes, over the %d-byte limit; pass bulk data in an shm.Array", len(msg), ctlMaxMessage-hdrLen-1)
	}
	c, err := spawnChild(setup{process: true}, -1, nil)
	if err != nil {
		return nil, err
	}
	if err := c.ctl.send(msg, nil); err != nil {
		c.kill()
		c.reap()
		return nil, err
	}
	pr := &Process{c: c, name: f.e.name}
	runtime.AddCleanup(pr, func(c *child) {
		c.kill()
		go c.reap()
	}, c)
	return pr, nil
}

// Pid returns the child's process id.
func (p *Process) Pid() int { return p.c.pid }

// Wait waits for the child to exit and reaps it. It returns nil if the
// function returned nil; a *TaskError if it returned an error or panicked;
// a *WorkerError (wrapping *exec.ExitError) if the child died otherwise,
// for example killed by a signal. The function's result value is
// discarded; the text of its error (or panic and stack) is cut to about
// 64 KiB.
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
			we := newWorkerError(workerID{Pid: p.c.pid}, werr)
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
	return itemError(st, item, name, 0, workerID{Pid: pid})
}

// processVerdict appends to dst what a Process's child reports to its
// parent: the result message of its one task (out) reduced to the status
// and, for a failure, the error text, cut to fit one control message of
// ctlMaxMessage bytes. The result value never travels: Start discards it,
// and a large one would not fit in a SEQPACKET message (EMSGSIZE, or cut
// short by the parent's read). ok reports a task that succeeded.
func processVerdict(dst, out []byte) (msg []byte, ok bool) {
	h, body, err := parseHeader(out)
	if err != nil || h.count < 1 || len(body) < 1 {
		// No item ran: no verdict, the exit status decides.
		return appendHeader(dst, msgHeader{kind: kindResult, job: h.job}), false
	}
	st := body[0]
	item, _, err := nextItem(body[1:])
	if err != nil {
		return appendHeader(dst, msgHeader{kind: kindResult, job: h.job}), false
	}
	dst = appendHeader(dst, msgHeader{kind: kindResult, count: 1, job: h.job})
	dst = append(dst, st)
	var at int
	dst, at = beginItem(dst)
	room := ctlMaxMessage - len(dst)
	switch st {
	case stOK:
		// The value is discarded by the parent: send none.
	case stPanic:
		text, stack := parsePanic(item)
		text = truncateText(text, room-4)
		stack = truncateText(stack, room-4-len(text))
		dst = appendPanic(dst, text, []byte(stack))
	case stErrFull:
		if len(item) <= room {
			dst = append(dst, item...)
			break
		}
		// Too long to keep whole: its text alone, cut to fit.
		err, _ := parseTaskError(item)
		dst[at-1] = stErr
		dst = append(dst, truncateText(err.Error(), room)...)
	default:
		dst = append(dst, truncateText(string(item), room)...)
	}
	return endItem(dst, at), st == stOK
}

const truncatedMark = "…(truncated)"

// truncateText cuts s to at most n bytes, on a rune boundary, ending with
// truncatedMark when it was cut.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < len(truncatedMark) {
		return ""
	}
	cut := n - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}
