package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"runtime/debug"
	"time"
)

// link is one end of a duplex message channel between the parent and one
// worker. Transports implement it (shared-memory rings; a network transport
// could be added without changing the user-visible API). Only one
// goroutine calls send and only one calls recv at a time; close may be
// called concurrently with both and makes them return.
type link interface {
	// send delivers one whole message, blocking while the channel is full.
	send(ctx context.Context, msg []byte) error
	// trySend delivers msg only if it can do so without waiting;
	// otherwise it sends nothing and returns errWouldBlock.
	trySend(msg []byte) error
	// recv appends the next message to dst[:0]. It returns os.ErrClosed
	// once the channel is closed and drained, or an error if the peer died.
	recv(ctx context.Context, dst []byte) ([]byte, error)
	// peerGone tells the parent's end that the worker process has exited:
	// recv returns what was committed, then an error, without waiting for
	// a liveness timeout.
	peerGone()
	// close releases this end; blocked calls return.
	close() error
}

// serve is the worker loop: it runs task messages from l until the parent
// closes the channel, sends kindStop, or the worker retires (after a panic,
// or when maxTasks tasks have run, if maxTasks > 0). It returns nil for a
// clean end.
func serve(ctx context.Context, l link, maxTasks int) error {
	var in, out []byte
	budget := maxTasks
	if budget <= 0 {
		budget = -1
	}
	for {
		var err error
		in, err = l.recv(ctx, in)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		h, body, err := parseHeader(in)
		if err != nil {
			return err
		}
		if h.kind == kindStop {
			return nil
		}
		if h.kind != kindTask {
			return errShortMsg
		}
		var retire bool
		out, retire = runTasks(out[:0], h, body, &budget)
		if err := l.send(ctx, out); err != nil {
			return err
		}
		if retire {
			return nil
		}
	}
}

// runTasks runs the items of one task message and appends the result
// message to dst. budget counts the tasks this worker may still run (-1:
// no limit). retire reports that the worker must exit after sending.
func runTasks(dst []byte, h msgHeader, body []byte, budget *int) (out []byte, retire bool) {
	start := time.Now()
	dst = appendHeader(dst, msgHeader{kind: kindResult, job: h.job, first: h.first})
	name, body, lerr := parseName(body)
	var e *entry
	if lerr == nil {
		e, lerr = lookup(name, h.extra)
	}
	status := uint8(stOK)
	switch {
	case errors.Is(lerr, ErrUnknownFunc):
		status = stUnknown
	case errors.Is(lerr, ErrFuncMismatch):
		status = stMismatch
	case lerr != nil:
		status = stErr
	}
	n := 0
	for ; n < h.count; n++ {
		if *budget == 0 || retire {
			retire = true
			break
		}
		arg, rest, err := nextItem(body)
		body = rest
		if err != nil {
			break // truncated message: report what ran
		}
		if *budget > 0 {
			*budget--
		}
		mark := len(dst)
		dst = append(dst, stOK)
		var at int
		dst, at = beginItem(dst)
		if e == nil {
			dst[mark] = status
			dst = append(dst, lerr.Error()...)
			dst = endItem(dst, at)
			continue
		}
		res, terr, pv, stack := callSafe(e, dst, arg)
		switch {
		case stack != nil:
			dst = appendPanic(dst[:at+4], pv, stack)
			dst[mark] = stPanic
			retire = true // the worker's state may be broken: replace it
		case terr != nil:
			dst = append(dst[:at+4], terr.Error()...)
			dst[mark] = stErr
		default:
			dst = res
		}
		dst = endItem(dst, at)
	}
	if *budget == 0 {
		retire = true
	}
	binary.LittleEndian.PutUint16(dst[2:], uint16(n))
	binary.LittleEndian.PutUint64(dst[16:], uint64(time.Since(start)))
	if retire {
		dst[1] |= flagRetire
	}
	return dst, retire
}

// callSafe runs one task, turning a panic into its value and stack.
func callSafe(e *entry, dst, arg []byte) (out []byte, err error, pv any, stack []byte) {
	defer func() {
		if r := recover(); r != nil {
			pv, stack, out = r, debug.Stack(), dst
		}
	}()
	out, err = e.call(dst, arg)
	return out, err, nil, nil
}
