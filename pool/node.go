package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mproc/mproc/internal/bridge"
)

// runMessage runs one task message that came from the network on the
// local pool pa (a *Pool) and passes its result messages, each at most
// limit bytes, to emit. The message is hostile: it is parsed whole, under
// the wire format's limits, before anything runs. Items that fail carry
// node and the local worker's pid (stRemote). The items run as one call
// of the local pool, so the node's workers share them as they would a
// local Map; the call is not fail-fast (the remote caller decides, and
// cancels what it no longer needs).
func runMessage(ctx context.Context, pa any, msg []byte, node string, limit int, emit func([]byte) error) (bridge.Outcome, error) {
	p, ok := pa.(*Pool)
	if !ok || p == nil {
		return bridge.Cancelled, errors.New("pool: runMessage on something other than a *Pool")
	}
	if limit < hdrLen+64 {
		return bridge.Cancelled, fmt.Errorf("pool: result limit of %d bytes is too small", limit)
	}
	job, first, count, err := parseTask(msg)
	if err != nil {
		return bridge.Cancelled, err
	}
	h, body, _ := parseHeader(msg)
	name, body, err := parseName(body)
	if err != nil {
		return bridge.Cancelled, fmt.Errorf("%w: %v", bridge.ErrMalformed, err)
	}
	args := &encoded{buf: make([]byte, 0, len(body)), ends: make([]int, count)}
	for i := range count {
		var item []byte
		if item, body, err = nextItem(body); err != nil {
			return bridge.Cancelled, fmt.Errorf("%w: item %d: %v", bridge.ErrMalformed, i, err)
		}
		if len(item) > maxValue {
			return bridge.Cancelled, fmt.Errorf("%w: item %d of %d bytes", bridge.ErrMalformed, i, len(item))
		}
		args.buf = append(args.buf, item...)
		args.ends[i] = len(args.buf)
	}
	if len(body) != 0 {
		return bridge.Cancelled, fmt.Errorf("%w: %d bytes after the last item", bridge.ErrMalformed, len(body))
	}
	w := resultWriter{job: job, first: first, limit: limit, node: node, emit: emit, start: time.Now()}
	e, status, detail := lookup(name, h.extra)
	if e == nil {
		for range count { // checked by the node process itself: its pid
			if err := w.add(status, os.Getpid(), []byte(detail)); err != nil {
				return bridge.Cancelled, err
			}
		}
		return bridge.Done, w.finish()
	}

	res := make([][]byte, count)
	errs := make([]error, count)
	cc, err := resolve(&p.core.cfg, nil)
	if err != nil {
		return bridge.Cancelled, err
	}
	c := newCall(e, cc, args)
	c.dec = func(i int, b []byte) error {
		res[i] = bytes.Clone(b)
		return nil
	}
	c.each = func(i int, err error) { errs[i] = err }
	if err := p.core.submit(c); err != nil {
		return bridge.Cancelled, err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		c.cancel(ctx.Err())
		return bridge.Cancelled, nil
	}
	c.mu.Lock()
	reason := c.reason
	c.mu.Unlock()
	if reason != nil {
		return bridge.Cancelled, reason // Terminate, or no worker left
	}
	outcome := bridge.Done
	for i := range count {
		st, pid, b := errStatus(errs[i])
		if st == stOK {
			b = res[i]
		}
		if st == stTimeout {
			outcome = bridge.TimedOut
		}
		if err := w.add(st, pid, b); err != nil {
			return bridge.Cancelled, err
		}
	}
	return outcome, w.finish()
}

// errStatus turns a local item's error back into a wire status, the pid
// of the worker that ran it, and the status's bytes.
func errStatus(err error) (status uint8, pid int, b []byte) {
	if err == nil {
		return stOK, 0, nil
	}
	var we *WorkerError
	if errors.As(err, &we) {
		return stWorker, we.Pid, []byte(truncateText(we.Error(), maxText))
	}
	var te *TaskError
	if !errors.As(err, &te) {
		return stErr, 0, []byte(truncateText(err.Error(), maxText))
	}
	text := func(sentinel error) []byte {
		return []byte(truncateText(strings.TrimPrefix(te.Err.Error(), sentinel.Error()+": "), maxText))
	}
	switch {
	case errors.Is(te.Err, ErrPanic):
		return stPanic, te.Pid, appendPanic(nil, string(text(ErrPanic)), []byte(te.Stack))
	case errors.Is(te.Err, ErrTaskTimeout):
		return stTimeout, te.Pid, nil
	case errors.Is(te.Err, ErrUnknownFunc):
		return stUnknown, te.Pid, nil
	case errors.Is(te.Err, ErrFuncMismatch):
		return stMismatch, te.Pid, text(ErrFuncMismatch)
	case errors.Is(te.Err, ErrTooLarge):
		return stTooLarge, te.Pid, text(ErrTooLarge)
	}
	return stErr, te.Pid, []byte(truncateText(te.Err.Error(), maxText))
}

// resultWriter cuts a node's results into messages of at most limit
// bytes; all but the last carry flagPartial.
type resultWriter struct {
	job   uint64
	first int // index of the next message's first item
	n     int // items in msg
	limit int
	node  string
	emit  func([]byte) error
	msg   []byte
	start time.Time // when the items began: the busy time of the messages
}

func (w *resultWriter) add(status uint8, pid int, b []byte) error {
	size := 1 + 4 + len(b)
	if status != stOK {
		size += 5 + 1 + len(w.node)
	}
	if hdrLen+size > w.limit {
		status, b = stTooLarge, fmt.Appendf(nil, "result of %d bytes is over the broker's %d-byte message limit; return it in an shm.Array", len(b), w.limit)
		size = 1 + 4 + 6 + len(w.node) + len(b)
	}
	if w.n > 0 && len(w.msg)+size > w.limit {
		finishResult(w.msg, w.n, flagPartial, w.start)
		if err := w.emit(w.msg); err != nil {
			return err
		}
		w.first += w.n
		w.n, w.msg = 0, nil
	}
	if w.msg == nil {
		w.msg = appendHeader(make([]byte, 0, min(w.limit, 64<<10)), msgHeader{kind: kindResult, job: w.job, first: w.first})
	}
	if status == stOK {
		w.msg = append(w.msg, stOK)
	} else {
		w.msg = append(w.msg, stRemote)
	}
	var at int
	w.msg, at = beginItem(w.msg)
	if status != stOK {
		w.msg = appendRemote(w.msg, status, pid, w.node)
	}
	w.msg = append(w.msg, b...)
	w.msg = endItem(w.msg, at)
	w.n++
	return nil
}

func (w *resultWriter) finish() error {
	if w.msg == nil {
		return nil
	}
	finishResult(w.msg, w.n, 0, w.start)
	return w.emit(w.msg)
}
