package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"
)

// serve is the worker loop: it runs task messages from l until the parent
// closes the channel, sends kindStop, or the worker retires (after a panic,
// or when maxTasks tasks have run, if maxTasks > 0). rel, if not nil,
// applies segment releases around each task message (release.go). It
// returns nil for a clean end.
func serve(ctx context.Context, l link, maxTasks int, rel *releaser) error {
	var in []byte
	r := runner{l: l, budget: -1}
	if maxTasks > 0 {
		r.budget = maxTasks
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
		sl, pullable := l.(*shmLink)
		if h.kind != kindTask && (h.kind != kindPull || !pullable) {
			return errBrokenPeer
		}
		if rel != nil {
			rel.begin()
		}
		var retire bool
		if h.kind == kindPull {
			retire, err = r.pull(ctx, h, body, sl)
		} else {
			retire, err = r.run(ctx, h, body)
		}
		if rel != nil {
			rel.end()
		}
		if err != nil {
			return err
		}
		if retire {
			return nil
		}
		if cap(in) > 2*softMessage {
			in = nil // do not pin a large message's memory while idle
		}
	}
}

// runner runs task messages in a worker and sends their results.
type runner struct {
	l      link
	budget int // tasks this worker may still run; -1: no limit
	out    []byte
}

// run runs the items of one task message, sending results through r.l in
// messages of about softMessage bytes at most. retire reports that the
// worker must exit after this message.
func (r *runner) run(ctx context.Context, h msgHeader, body []byte) (retire bool, err error) {
	r.l.begin(h.job)
	out, retire, err := runTasks(r.out[:0], h, body, &r.budget, r.l.aborted, func(msg []byte) error {
		return r.l.send(ctx, msg)
	})
	if err == nil {
		err = r.l.send(ctx, out)
	}
	r.out = out
	if cap(r.out) > 2*softMessage {
		r.out = nil
	}
	return retire, err
}

// runTasks runs the items of one task message and appends its (last)
// result message to dst. budget counts the tasks this worker may still run
// (-1: no limit). aborted, if not nil, is asked before each item whether
// the parent wants the rest of the job skipped. flush, if not nil,
// receives a partial result message whenever the results pass
// softMessage; without it all results go in the returned message. retire
// reports that the worker must exit after sending.
func runTasks(dst []byte, h msgHeader, body []byte, budget *int, aborted func(job uint64) bool, flush func([]byte) error) (out []byte, retire bool, err error) {
	name, items, lerr := parseName(body)
	fn := taskFn{status: stErr}
	if lerr == nil {
		fn = lookupTask(name, h.extra)
	} else {
		fn.detail = lerr.Error()
	}
	out, retire, _, err = runItems(dst, h, fn, items, 0, budget, aborted, nil, flush)
	return out, retire, err
}

// taskFn is the function a task message names: e, or the status and
// detail every item reports when it is unknown or does not match.
type taskFn struct {
	e      *entry
	status uint8
	detail string
}

func lookupTask(name string, sig uint64) taskFn {
	e, status, detail := lookup(name, sig)
	return taskFn{e: e, status: status, detail: detail}
}

// runItems runs h.count items of fn from body (len u32 | bytes each, or,
// with stride > 0, stride bytes each unframed), the first being item
// h.first of its call, as runTasks describes. begun, if
// not nil, is told each item's index before it runs. flags returns the
// flags of the last result message.
func runItems(dst []byte, h msgHeader, fn taskFn, body []byte, stride int, budget *int, aborted func(job uint64) bool, begun func(int), flush func([]byte) error) (out []byte, retire bool, flags uint8, err error) {
	start := time.Now()
	first := h.first
	dst = appendHeader(dst, msgHeader{kind: kindResult, job: h.job, first: first})
	e, status, detail := fn.e, fn.status, fn.detail
	n := 0
	var tctx context.Context // for a RegisterCtx function: cancelled on abort
	for k := 0; k < h.count; k++ {
		if *budget == 0 || retire {
			retire = true
			break
		}
		if aborted != nil && aborted(h.job) {
			flags |= flagAborted
			break
		}
		var arg []byte
		if stride > 0 {
			if len(body) < stride {
				break // truncated: report what ran
			}
			arg, body = body[:stride], body[stride:]
		} else {
			var err error
			if arg, body, err = nextItem(body); err != nil {
				break // truncated message: report what ran
			}
		}
		if *budget > 0 {
			*budget--
		}
		if begun != nil {
			begun(h.first + k)
		}
		mark := len(dst)
		dst = append(dst, stOK)
		var at int
		dst, at = beginItem(dst)
		if e == nil {
			dst[mark] = status
			dst = append(dst, detail...)
			dst = endItem(dst, at)
			n++
			if h.flags&flagFailFast != 0 {
				flags |= flagAborted // the call fails with this item
				break
			}
			continue
		}
		if e.ctx && tctx == nil {
			var stop func()
			tctx, stop = watchAbort(h.job, aborted)
			defer stop()
		}
		res, terr, pv, stack := callSafe(tctx, e, dst, arg)
		switch {
		case stack != nil:
			dst = appendPanic(dst[:at+4], pv, stack)
			dst[mark] = stPanic
			retire = true // the worker's state may be broken: replace it
		case terr == nil && len(res)-at-4 <= maxValue:
			dst = res
		case terr == nil || errors.Is(terr, errResultTooLarge):
			dst = fmt.Appendf(dst[:at+4], "result of task %d encodes to more than the %d-byte limit; return it in an shm.Array", h.first+k, maxValue)
			dst[mark] = stTooLarge
		default:
			dst = appendTaskError(dst[:at+4], terr, e.returned())
			dst[mark] = stErrFull
		}
		dst = endItem(dst, at)
		n++
		if dst[mark] != stOK && h.flags&flagFailFast != 0 && !retire {
			flags |= flagAborted // the call fails with this item
			break
		}
		if flush != nil && len(dst) > softMessage && k+1 < h.count {
			finishResult(dst, n, flagPartial, start)
			if err := flush(dst); err != nil {
				return dst, retire, flags, err
			}
			first += n
			n, start = 0, time.Now()
			dst = appendHeader(dst[:0], msgHeader{kind: kindResult, job: h.job, first: first})
		}
	}
	if *budget == 0 {
		retire = true
	}
	if retire {
		flags |= flagRetire
	}
	finishResult(dst, n, flags, start)
	return dst, retire, flags, nil
}

// finishResult fills in a result message's count, flags and busy time.
func finishResult(msg []byte, count int, flags uint8, start time.Time) {
	msg[1] |= flags
	binary.LittleEndian.PutUint16(msg[2:], uint16(count))
	binary.LittleEndian.PutUint64(msg[16:], uint64(time.Since(start)))
}

// callSafe runs one task, turning a panic into its value and stack. ctx is
// nil unless the function takes one.
func callSafe(ctx context.Context, e *entry, dst, arg []byte) (out []byte, err error, pv any, stack []byte) {
	defer func() {
		if r := recover(); r != nil {
			pv, stack, out = r, debug.Stack(), dst
		}
	}()
	out, err = e.call(ctx, dst, arg)
	return out, err, nil, nil
}

// abortPoll is how often a worker running a RegisterCtx task looks at the
// parent's abort flag for its job.
const abortPoll = time.Millisecond

// watchAbort returns the context of a RegisterCtx task message: cancelled
// once aborted(job) reports the parent's abort. A goroutine polls it every
// abortPoll until stop; nothing polls while no such task runs. With
// aborted nil (a Process) the context is never cancelled.
func watchAbort(job uint64, aborted func(job uint64) bool) (ctx context.Context, stop func()) {
	if aborted == nil {
		return context.Background(), func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(abortPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if aborted(job) {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel() }
}
