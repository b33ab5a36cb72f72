package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"

	"github.com/mproc/mproc/internal/bridge"
)

// A remote backend (package cluster) runs a pool's slots as virtual
// workers whose links are a message broker; this file adapts bridge's
// exported contract to the unexported backend, proc and link, so that the
// core (slot.go, dispatch.go) does not know the difference.

func init() {
	bridge.NewPool = newRemotePool
	bridge.RunMessage = runMessage
	bridge.ParseTask = parseTask
	bridge.FailedResult = failedResult
	bridge.SplitTask, bridge.JoinTask = splitTask, joinTask
	bridge.SplitResult, bridge.JoinResult = splitResult, joinResult
}

// nodeMain runs the process as a cluster node if it was started as one
// (see package cluster); isNode is false otherwise.
func nodeMain() (code int, isNode bool) {
	if bridge.NodeMain == nil {
		return 0, false
	}
	return bridge.NodeMain()
}

// newRemotePool builds a Pool of workers virtual slots on b. Its core
// never retries a chunk itself (Retries 0): the broker redelivers, and
// the backend reports a chunk it gave up on as failed items.
func newRemotePool(workers int, b bridge.Backend) (any, error) {
	cfg, err := (&Config{Workers: workers, Retries: 0, NoPin: true}).withDefaults()
	if err != nil {
		return nil, err
	}
	place := make([]Placement, cfg.Workers)
	for i := range place {
		place[i] = Placement{Worker: i, CPU: -1}
	}
	c, err := start(cfg, place, remoteBackend{b})
	if err != nil {
		return nil, err
	}
	pool := &Pool{core: c}
	runtime.AddCleanup(pool, func(p *core) { go p.terminate() }, c)
	return pool, nil
}

type remoteBackend struct{ b bridge.Backend }

func (r remoteBackend) start(slot int) (proc, error) {
	p, err := r.b.Start(slot)
	if err != nil {
		return nil, err
	}
	return remoteProc{p: p, l: remoteLink{p.Link()}}, nil
}

type remoteProc struct {
	p bridge.Proc
	l remoteLink
}

func (r remoteProc) link() link              { return r.l }
func (r remoteProc) exited() <-chan struct{} { return r.p.Exited() }
func (r remoteProc) kill()                   { r.p.Kill() }
func (r remoteProc) reap() error             { return r.p.Reap() }
func (r remoteProc) id() workerID            { return workerID{Node: r.p.Node()} }

// remoteLink is the parent's end only; the worker side is a node.
type remoteLink struct{ l bridge.Link }

var _ link = remoteLink{}

func (r remoteLink) send(ctx context.Context, msg []byte) error { return r.l.Send(ctx, msg) }
func (r remoteLink) trySend([]byte) error                       { return errWouldBlock }
func (r remoteLink) recv(ctx context.Context, buf []byte) ([]byte, error) {
	return r.l.Recv(ctx, buf)
}
func (r remoteLink) peerGone() { r.l.PeerGone() }

// taken is 0: a virtual worker ends only when the pool stops it or is
// terminated, so its chunks never cost a retry here.
func (r remoteLink) taken() uint64       { return 0 }
func (r remoteLink) abort(_, job uint64) { r.l.Abort(job) }
func (r remoteLink) begin(uint64)        {}
func (r remoteLink) aborted(uint64) bool { return false }
func (r remoteLink) close() error        { return r.l.Close() }

// Item statuses only a node sends (numbered apart from wire.go's). stRemote wraps another status with
// where the item ran, so that the caller's errors name the node and the
// pid there:
//
//	stRemote u8 | inner status u8 | pid u32 | nodeLen u8 | node | inner bytes
const (
	stTimeout = 16 // bytes: error text (ErrTaskTimeout)
	stWorker  = 17 // bytes: what happened to the worker (a *WorkerError)
	stRemote  = 18
)

func appendRemote(dst []byte, inner uint8, pid int, node string) []byte {
	dst = append(dst, inner)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(pid))
	return appendName(dst, node)
}

// remoteItemError rebuilds the error of an item that failed on a node.
func remoteItemError(b []byte, name string, index int) error {
	if len(b) < 5 {
		return &TaskError{Func: name, Index: index, Err: errShortMsg}
	}
	inner, pid := b[0], int(binary.LittleEndian.Uint32(b[1:]))
	node, rest, err := parseName(b[5:])
	if err != nil {
		return &TaskError{Func: name, Index: index, Err: errShortMsg}
	}
	switch inner {
	case stWorker:
		return &WorkerError{Func: name, Index: index, Pid: pid, Node: node, Code: -1, Err: errors.New(string(rest))}
	case stTimeout:
		return &TaskError{Func: name, Index: index, Pid: pid, Node: node, Err: ErrTaskTimeout}
	case stRemote, stOK:
		inner = stErr
	}
	return itemError(inner, rest, name, index, workerID{Node: node, Pid: pid})
}

// parseTask checks a task message's header (see bridge.ParseTask).
func parseTask(msg []byte) (job uint64, first, count int, err error) {
	h, _, err := parseHeader(msg)
	switch {
	case err != nil:
		return 0, 0, 0, fmt.Errorf("%w: %v", bridge.ErrMalformed, err)
	case h.kind != kindTask:
		return 0, 0, 0, fmt.Errorf("%w: kind %d", bridge.ErrMalformed, h.kind)
	case h.count == 0 || h.count > maxChunk:
		return 0, 0, 0, fmt.Errorf("%w: %d items", bridge.ErrMalformed, h.count)
	}
	return h.job, h.first, h.count, nil
}

// failedResult builds a result message failing count items (see
// bridge.FailedResult).
func failedResult(job uint64, first, count int, node string, pid int, tooLarge bool, text string) []byte {
	inner := uint8(stWorker)
	if tooLarge {
		inner = stTooLarge
	}
	msg := appendHeader(nil, msgHeader{kind: kindResult, count: count, first: first, job: job})
	for range count {
		msg = append(msg, stRemote)
		var at int
		msg, at = beginItem(msg)
		msg = appendRemote(msg, inner, pid, node)
		msg = append(msg, text...)
		msg = endItem(msg, at)
	}
	return msg
}

func splitTask(msg []byte) (prefix []byte, items [][]byte, err error) {
	_, _, count, err := parseTask(msg)
	if err != nil {
		return nil, nil, err
	}
	_, rest, err := parseName(msg[hdrLen:])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", bridge.ErrMalformed, err)
	}
	prefix = msg[:len(msg)-len(rest)]
	items = make([][]byte, count)
	for i := range items {
		start := rest
		if _, rest, err = nextItem(rest); err != nil {
			return nil, nil, fmt.Errorf("%w: item %d: %v", bridge.ErrMalformed, i, err)
		}
		items[i] = start[:len(start)-len(rest)]
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: bytes after the last item", bridge.ErrMalformed)
	}
	return prefix, items, nil
}

func joinTask(prefix []byte, first int, items [][]byte) []byte {
	msg := append([]byte(nil), prefix...)
	binary.LittleEndian.PutUint16(msg[2:], uint16(len(items)))
	binary.LittleEndian.PutUint32(msg[4:], uint32(first))
	for _, it := range items {
		msg = append(msg, it...)
	}
	return msg
}

func splitResult(msg []byte) (job uint64, first int, busy uint64, items [][]byte, err error) {
	h, body, err := parseHeader(msg)
	if err != nil || h.kind != kindResult || h.count > maxChunk {
		return 0, 0, 0, nil, fmt.Errorf("%w: not a result message", errBrokenPeer)
	}
	items = make([][]byte, h.count)
	for i := range items {
		if len(body) < 1 {
			return 0, 0, 0, nil, errShortMsg
		}
		_, rest, err := nextItem(body[1:])
		if err != nil {
			return 0, 0, 0, nil, err
		}
		items[i] = body[:len(body)-len(rest)]
		body = rest
	}
	if len(body) != 0 {
		return 0, 0, 0, nil, fmt.Errorf("%w: bytes after the last item", errBrokenPeer)
	}
	return h.job, h.first, h.extra, items, nil
}

func joinResult(job uint64, first int, items [][]byte, partial, aborted bool, busy uint64) []byte {
	var flags uint8
	if partial {
		flags |= flagPartial
	}
	if aborted {
		flags |= flagAborted
	}
	msg := appendHeader(nil, msgHeader{kind: kindResult, flags: flags, count: len(items), first: first, job: job, extra: busy})
	for _, it := range items {
		msg = append(msg, it...)
	}
	return msg
}
