package bridge

import (
	"context"
	"errors"
)

// Backend starts the virtual worker behind pool slot slot: a stream of
// task messages out and result messages back, in pool's wire format.
type Backend interface {
	Start(slot int) (Proc, error)
}

// Proc is one started virtual worker (pool's proc).
type Proc interface {
	Link() Link
	Exited() <-chan struct{}
	Kill()
	Reap() error
	// Node names the machine in errors about the worker as a whole.
	Node() string
}

// Link is pool's link, parent side only: the worker side of a remote
// worker is a node, reached through the broker.
type Link interface {
	// Send delivers one task or stop message, blocking while it must.
	Send(ctx context.Context, msg []byte) error
	// Recv returns the next result message; os.ErrClosed once closed and
	// drained.
	Recv(ctx context.Context, buf []byte) ([]byte, error)
	// PeerGone makes Recv return what it holds, then os.ErrClosed.
	PeerGone()
	// Abort asks that the rest of job be skipped. It must not block: it
	// is called with the pool's lock held.
	Abort(job uint64)
	Close() error
}

// ErrWouldBlock is what pool's trySend reports for a remote link: sending
// always goes through the slot's sender goroutine.
var ErrWouldBlock = errors.New("bridge: would block")

// Outcome says how RunMessage ended, for the node's ack decision.
type Outcome int

const (
	// Done: every item has a result, published through emit.
	Done Outcome = iota
	// TimedOut: at least one item hit the node pool's TaskTimeout; its
	// local worker was killed and replaced. Results were published.
	TimedOut
	// Cancelled: ctx ended first; nothing more was published.
	Cancelled
)

// Set by package pool's init.
var (
	// NewPool returns a *pool.Pool (as any) of workers slots on b. Its
	// core never retries a chunk: JetStream's MaxDeliver owns retries.
	NewPool func(workers int, b Backend) (any, error)

	// RunMessage runs one task message (pool's wire format, hostile) on
	// p, a *pool.Pool, and passes its result messages to emit, each at
	// most limit bytes; node and the local worker's pid are written into
	// every failed item. A message it cannot parse gives an error
	// wrapping ErrMalformed and runs nothing.
	RunMessage func(ctx context.Context, p any, msg []byte, node string, limit int, emit func([]byte) error) (Outcome, error)

	// ParseTask checks a task message's header and returns its job, first
	// item and item count, or an error wrapping ErrMalformed.
	ParseTask func(msg []byte) (job uint64, first, count int, err error)

	// SplitTask splits a task message into its prefix (header and
	// function name) and its items (each length-prefixed, as on the
	// wire); JoinTask builds a task message of some of them, the first
	// being item first of the call.
	SplitTask func(msg []byte) (prefix []byte, items [][]byte, err error)
	JoinTask  func(prefix []byte, first int, items [][]byte) []byte

	// SplitResult checks a result message from the network and splits it
	// into items (status byte, length, bytes); JoinResult builds one.
	SplitResult func(msg []byte) (job uint64, first int, busy uint64, items [][]byte, err error)
	JoinResult  func(job uint64, first int, items [][]byte, partial, aborted bool, busy uint64) []byte

	// FailedResult returns a result message for items first..first+count-1
	// of job, each failed with a *pool.WorkerError (lost says how) naming
	// node and pid, or (tooLarge) a *pool.TaskError wrapping ErrTooLarge.
	FailedResult func(job uint64, first, count int, node string, pid int, tooLarge bool, text string) []byte
)

// ErrMalformed marks a task message no well-behaved client sends.
var ErrMalformed = errors.New("malformed task message")

// NodeMain is set by package cluster's init: pool.Init calls it after the
// worker check; when the process was started as a node it serves and
// returns the exit code and true, else false at once.
var NodeMain func() (code int, isNode bool)
