package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// envWorker marks a re-executed worker. Init reads and unsets it.
const envWorker = "MPROC_WORKER"

// readyTimeout bounds the start-up handshake: a child that has not said
// "ready" by then is taken to hang before Init. A child whose main lacks
// Init exits, and that is noticed at once; the bound only matters for a
// hung one, so it leaves room for a loaded machine.
const readyTimeout = 5 * time.Second

// Exit codes of a worker process. The Go runtime exits with 2 on a fatal
// error or an unrecovered panic, so the library's own codes stay clear of
// it.
const (
	exitOK         = 0
	exitTaskFailed = 1  // Process: the function returned an error or panicked
	exitProtocol   = 86 // broken set-up or message from the parent
	exitParentGone = 87 // the control socket reached EOF: the parent died
)

var initCalled atomic.Bool

// Init must be the first statement of main, and of TestMain in test
// binaries (before m.Run): it is Go's counterpart of Python's
// `if __name__ == "__main__":` guard. A worker is this program re-executed;
// in a worker Init serves tasks and then exits the process, never returning.
// In the parent it returns at once. After Init, Register panics. A task
// may start a Pool or a Process of its own; it should close that pool
// before it returns.
func Init() {
	closeRegistry()
	// Set in a worker too: a task may start a pool or a Process of its own.
	initCalled.Store(true)
	v, ok := os.LookupEnv(envWorker)
	if !ok {
		if code, isNode := nodeMain(); isNode { // a cluster node (remote.go)
			os.Exit(code)
		}
		return
	}
	// Unset it so that a task which itself starts a pool is a parent.
	os.Unsetenv(envWorker)
	os.Exit(workerMain(v))
}

// checkCanSpawn refuses to start workers from a process that would
// multiply itself.
func checkCanSpawn() error {
	if _, ok := os.LookupEnv(envWorker); ok {
		return ErrInWorker
	}
	if !initCalled.Load() {
		return ErrNoInit
	}
	return nil
}

// Control-socket operations: the first byte of every control message.
const (
	opSetup       = 'S' // parent: setup
	opReady       = 'R' // child: handshake done
	opFailed      = 'E' // child: start-up failed, text follows
	opFetch       = 'F' // child: send me segment <id u64>
	opFetchReply  = 'f' // parent: <id u64> 0 + SCM_RIGHTS fd, or <id u64> 1 + error text
	opRelease     = 'D' // parent: segment <id u64> was closed, drop it
	opTask        = 'T' // parent (Process): one task message
	opResult      = 'r' // child (Process): its result message
	ctlMaxMessage = 1 << 16
)

// setup is what the parent tells a new child over its control socket.
type setup struct {
	process     bool   // run one task from the control socket, then exit
	maxTasks    int    // pool: retire after this many tasks (0: never)
	initializer string // pool: registered function run before "ready"
	transport   string // pool: how to open the task/result link
}

func encodeSetup(s setup) []byte {
	b := []byte{opSetup, 0}
	if s.process {
		b[1] = 1
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(s.maxTasks))
	b = appendName(b, s.initializer)
	return append(b, s.transport...)
}

func decodeSetup(b []byte) (setup, error) {
	if len(b) < 6 || b[0] != opSetup {
		return setup{}, errNoSetup
	}
	s := setup{process: b[1] == 1, maxTasks: int(binary.LittleEndian.Uint32(b[2:]))}
	name, rest, err := parseName(b[6:])
	if err != nil {
		return setup{}, errNoSetup
	}
	s.initializer, s.transport = name, string(rest)
	return s, nil
}

// child is the parent's view of one re-executed child process.
type child struct {
	cmd     *exec.Cmd
	pid     int
	ctl     *ctlConn
	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error         // valid after exited is closed
	ready   chan error    // the handshake's answer (buffered)
	results chan []byte   // Process: the result message (buffered)
	ctlDone chan struct{} // closed when the control socket reached EOF
	started time.Time
	once    sync.Once

	// releases is the worker's link (nil for a Process), whose control
	// page counts the segment releases posted to the child.
	releases *shmLink
	// served holds the ids of the segments this child fetched and may
	// still map; guarded by liveChildren.mu.
	served map[uint64]struct{}
}

// spawnChild re-executes this binary as a worker with the given set-up and
// waits (at most readyTimeout) for its handshake. cpu < 0: no pinning.
// l is the worker's link, nil for a Process.
func spawnChild(s setup, cpu int, l *shmLink) (*child, error) {
	if err := checkCanSpawn(); err != nil {
		return nil, err
	}
	c, err := startChild(s, cpu, l)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case err = <-c.ready:
	case <-c.exited:
		// The ready or failure message may have raced the exit: let the
		// control reader drain the socket (EOF follows the exit at once)
		// before deciding that the child never spoke.
		select {
		case <-c.ctlDone:
		case <-time.After(100 * time.Millisecond):
		}
		select {
		case err = <-c.ready:
		default:
			err = fmt.Errorf("%w (worker %d exited during start-up: %v)", ErrNoInit, c.pid, c.waitErr)
		}
	case <-t.C:
		err = fmt.Errorf("%w (worker %d did not answer within %v)", ErrNoInit, c.pid, readyTimeout)
	}
	if err != nil {
		c.kill()
		c.reap()
		return nil, err
	}
	return c, nil
}

// kill sends SIGKILL (pidfd-based: safe against pid reuse).
func (c *child) kill() {
	c.cmd.Process.Kill()
}

// reap waits for the exit and for the control socket's EOF (so every
// message the child sent has been handled), then releases the socket.
func (c *child) reap() error {
	<-c.exited
	select {
	case <-c.ctlDone:
	case <-time.After(time.Second):
		// A grandchild inherited the socket? Do not hang on it.
	}
	c.once.Do(func() {
		forgetChild(c)
		c.ctl.close()
	})
	return c.waitErr
}

// childArgs is the argv of a re-executed worker. In a test binary the
// flags make a child whose TestMain lacks Init run no test at all (and so
// start no workers of its own: no fork bomb) and exit, which the handshake
// then reports as ErrNoInit.
func childArgs() []string {
	args := []string{os.Args[0]}
	if testing.Testing() {
		args = append(args, "-test.run=^$", "-test.bench=^$")
	}
	return args
}

var errNoSetup = errors.New("pool: no set-up message from the parent")
