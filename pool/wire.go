package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of the messages between the parent and a worker. It does not
// depend on the transport that carries them (shared-memory rings today).
// Everything is little-endian; every read is bounds-checked because a
// message may come from a crashed or hostile peer.
//
// Task message (parent to worker), one per chunk of a call:
//
//	kind u8 | flags u8 | count u16 | first u32 | job u64 | sig u64 |
//	nameLen u8 | name | count × (len u32 | argument bytes)
//
// Result message (worker to parent), one per task message:
//
//	kind u8 | flags u8 | count u16 | first u32 | job u64 | busy ns u64 |
//	count × (status u8 | len u32 | bytes)
//
// first is the index, within the call, of the message's first item. count
// is a u16, so the parent never puts more than maxChunk items in one task.
// Results of one task message arrive in order, in one result message or,
// when they would pass softMessage, in several: all but the last carry
// flagPartial. The last may report fewer items than remain only with
// flagRetire (the worker is retiring after a panic or at
// MaxTasksPerWorker; the rest run elsewhere) or flagAborted (the parent
// asked to skip the rest). A short result without either is a broken peer.
const (
	kindTask   = 1
	kindResult = 2
	kindStop   = 3 // parent to worker: exit cleanly
	kindPull   = 4 // parent to worker: claim and run items of a published call (board.go)

	flagRetire  = 1  // result: this worker exits after this message
	flagPartial = 2  // result: more results of this task message follow
	flagAborted = 4  // result: the items not reported were skipped on request
	flagPulled  = 8  // result: of a pulled call; first is the item's index, any order
	flagDone    = 16 // result: the worker takes no more items of this pulled call

	flagFailFast = 1 // task: the first failed item fails the call; skip the rest
	flagStream   = 2 // pull: each claim's results wake the parent (Imap, Progress)

	hdrLen = 24
)

// Item statuses in a result message.
const (
	stOK       = 0 // bytes: the encoded result
	stErr      = 1 // bytes: error text
	stPanic    = 2 // bytes: len u32 | panic text | stack
	stUnknown  = 3 // bytes: error text (ErrUnknownFunc)
	stMismatch = 4 // bytes: error text (ErrFuncMismatch)
	stTooLarge = 5 // bytes: error text (ErrTooLarge): the result was over maxValue
	stErrFull  = 6 // bytes: a task's returned error (appendTaskError)
)

var errShortMsg = errors.New("pool: truncated message from peer")

type msgHeader struct {
	kind, flags uint8
	count       int
	first       int
	job         uint64
	extra       uint64 // sig in a task, busy nanoseconds in a result
}

func appendHeader(dst []byte, h msgHeader) []byte {
	dst = append(dst, h.kind, h.flags)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(h.count))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.first))
	dst = binary.LittleEndian.AppendUint64(dst, h.job)
	return binary.LittleEndian.AppendUint64(dst, h.extra)
}

func parseHeader(b []byte) (msgHeader, []byte, error) {
	if len(b) < hdrLen {
		return msgHeader{}, nil, errShortMsg
	}
	return msgHeader{
		kind:  b[0],
		flags: b[1],
		count: int(binary.LittleEndian.Uint16(b[2:])),
		first: int(binary.LittleEndian.Uint32(b[4:])),
		job:   binary.LittleEndian.Uint64(b[8:]),
		extra: binary.LittleEndian.Uint64(b[16:]),
	}, b[hdrLen:], nil
}

// maxNameLen is the longest function name the wire format carries
// (nameLen is a u8); Register refuses longer ones.
const maxNameLen = 255

// appendName appends a function name (at most maxNameLen bytes).
func appendName(dst []byte, name string) []byte {
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	dst = append(dst, byte(len(name)))
	return append(dst, name...)
}

func parseName(b []byte) (string, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, errShortMsg
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], nil
}

// beginItem reserves the length word of an item; endItem fills it in.
func beginItem(dst []byte) ([]byte, int) {
	return append(dst, 0, 0, 0, 0), len(dst)
}

func endItem(dst []byte, at int) []byte {
	binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

// nextItem splits one length-prefixed item off b.
func nextItem(b []byte) (item, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errShortMsg
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, errShortMsg
	}
	return b[4 : 4+n], b[4+n:], nil
}

// wellFormed reports whether body holds count result items (a status byte,
// then a length-prefixed item, each) and nothing past them.
func wellFormed(body []byte, count int) bool {
	for range count {
		if len(body) < 1 {
			return false
		}
		_, tail, err := nextItem(body[1:])
		if err != nil {
			return false
		}
		body = tail
	}
	return len(body) == 0
}

// appendPanic encodes a recovered panic value and stack as a stPanic item
// body, each cut to maxText.
func appendPanic(dst []byte, v any, stack []byte) []byte {
	msg := truncateText(fmt.Sprint(v), maxText)
	if len(stack) > maxText {
		stack = stack[:maxText]
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(msg)))
	dst = append(dst, msg...)
	return append(dst, stack...)
}

func parsePanic(b []byte) (msg, stack string) {
	if len(b) < 4 {
		return string(b), ""
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return string(b[4:]), ""
	}
	return string(b[4 : 4+n]), string(b[4+n:])
}

// encodeTask appends a task message for items lo..hi-1 of args.
// flags holds task flags (flagFailFast).
func encodeTask(dst []byte, e *entry, job uint64, flags uint8, args *encoded, lo, hi int) []byte {
	if hi-lo > maxChunk {
		panic("pool: invariant broken: a task message holds at most maxChunk items")
	}
	dst = appendHeader(dst, msgHeader{kind: kindTask, flags: flags, count: hi - lo, first: lo, job: job, extra: e.sig})
	dst = appendName(dst, e.name)
	for i := lo; i < hi; i++ {
		var at int
		dst, at = beginItem(dst)
		dst = append(dst, args.item(i)...)
		dst = endItem(dst, at)
	}
	return dst
}

// itemError turns a failed item's status and bytes into the caller's
// error; nil for stOK.
func itemError(status uint8, b []byte, name string, index int, id workerID) error {
	if status == stRemote {
		return remoteItemError(b, name, index) // remote.go
	}
	te := &TaskError{Func: name, Index: index, Pid: id.Pid, Node: id.Node}
	switch status {
	case stOK:
		return nil
	case stPanic:
		msg, stack := parsePanic(b)
		te.Err, te.Stack = fmt.Errorf("%w: %s", ErrPanic, msg), stack
	case stUnknown:
		te.Err = fmt.Errorf("%w: %q", ErrUnknownFunc, name)
	case stMismatch:
		te.Err = fmt.Errorf("%w: %s", ErrFuncMismatch, b)
	case stTooLarge:
		te.Err = fmt.Errorf("%w: %s", ErrTooLarge, b)
	case stErrFull:
		te.Err, te.Stack = parseTaskError(b)
	default:
		te.Err = errors.New(string(b))
	}
	return te
}
