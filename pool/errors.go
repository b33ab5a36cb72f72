package pool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

var (
	// ErrNoInit is returned by New and Start when Init was not called first
	// in main (or TestMain), or when a worker did not answer the start-up
	// handshake because its main never reached Init.
	ErrNoInit = errors.New("pool: call pool.Init() first in main / TestMain")

	// ErrInWorker is returned by New and Start when MPROC_WORKER is still
	// set in the environment: this process is a worker whose main did not
	// call Init, and starting more workers would multiply processes.
	ErrInWorker = errors.New("pool: MPROC_WORKER is set: this process is an mproc worker; call pool.Init() first in main / TestMain")

	// ErrUnknownFunc is returned (inside a *TaskError) when a worker has no
	// function registered under the task's name: it was registered after
	// Init, inside main, or only in the parent.
	ErrUnknownFunc = errors.New("pool: function not registered in the worker (register at package init, not inside main)")

	// ErrFuncMismatch is returned (inside a *TaskError) when the worker's
	// function of that name has other argument or result types.
	ErrFuncMismatch = errors.New("pool: registered function has different argument or result types in the worker")

	// ErrTaskTimeout is returned (inside a *TaskError) when a task ran
	// longer than Config.TaskTimeout; its worker was killed and replaced.
	ErrTaskTimeout = errors.New("pool: task timed out, worker killed")

	// ErrPanic is returned (inside a *TaskError) when the task panicked;
	// the TaskError's Stack holds the worker's stack trace.
	ErrPanic = errors.New("pool: task panicked")

	// ErrTerminated is returned for tasks that were pending or running when
	// Terminate was called.
	ErrTerminated = errors.New("pool: terminated")

	// ErrTooLarge is returned (inside a *TaskError naming the item) when one
	// argument or result encodes to more than 64 MiB. Put bulk data in an
	// shm.Array and pass the handle instead.
	ErrTooLarge = errors.New("pool: value too large for a message")
)

// ErrClosed is returned when submitting to a pool after Close or
// Terminate. It is os.ErrClosed.
var ErrClosed = os.ErrClosed

// TaskError reports a task that failed in a worker: it returned an error,
// panicked, timed out, or named a function the worker does not know.
// Unwrap gives ErrPanic, ErrTaskTimeout, ErrUnknownFunc, ErrFuncMismatch or
// the task's own error, rebuilt with its text: errors.Is and errors.As see
// through it to the sentinels and types registered with RegisterError and
// RegisterErrorType, and to nothing else.
type TaskError struct {
	Func  string // registered name of the function
	Index int    // index of the task in its Map/Imap call (0 for Apply)
	Pid   int    // pid of the worker that ran it (0 if none did)
	Node  string // the machine of that worker; "" for this one
	Stack string // the worker goroutine's stack when it panicked; for a returned error, the function that returned it
	Err   error
}

func (e *TaskError) Error() string {
	where := ""
	if e.Pid != 0 {
		where = " in worker " + workerID{Node: e.Node, Pid: e.Pid}.String()
	}
	s := fmt.Sprintf("pool: task %d (%s)%s: %v", e.Index, e.Func, where, e.Err)
	if e.Stack != "" && errors.Is(e.Err, ErrPanic) {
		s += "\n" + e.Stack
	}
	return s
}

func (e *TaskError) Unwrap() error { return e.Err }

// WorkerError reports a worker that died (killed by a signal or exited)
// while it ran the task, after the task's retries were used up. For a
// worker on this machine Err is the *exec.ExitError from waiting for it,
// and Signal and Code describe the exit; another backend fills Node and
// gives its own Err.
type WorkerError struct {
	Func   string
	Index  int
	Pid    int
	Node   string        // the worker's machine; "" for this one
	Signal os.Signal     // signal that killed the worker, nil if it exited or is unknown
	Code   int           // exit code, -1 if killed by a signal or unknown
	After  time.Duration // how long the task's last attempt had been running
	Err    error
}

func (e *WorkerError) Error() string {
	var how string
	switch {
	case e.Signal != nil:
		how = "killed by signal " + e.Signal.String()
	case e.Code >= 0:
		how = fmt.Sprintf("exited with code %d", e.Code)
		if why := exitReason(e.Code); why != "" {
			how += " (" + why + ")"
		}
	case e.Err != nil:
		how = "was lost: " + e.Err.Error()
	default:
		how = "was lost"
	}
	return fmt.Sprintf("pool: worker %s %s while running task %d (%s)", workerID{Node: e.Node, Pid: e.Pid}, how, e.Index, e.Func)
}

func (e *WorkerError) Unwrap() error { return e.Err }

// newWorkerError fills Signal and Code from err when it is an
// *exec.ExitError.
func newWorkerError(id workerID, err error) *WorkerError {
	we := &WorkerError{Pid: id.Pid, Node: id.Node, Code: -1, Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		we.Code = ee.ExitCode()
		we.Signal = exitSignal(ee)
	}
	return we
}

// exitReason explains the exit codes that say something about a worker.
func exitReason(code int) string {
	switch code {
	case 2:
		return "a Go runtime fatal error or a panic outside any task: see the worker's stderr"
	case exitProtocol:
		return "the worker found its set-up or a message from the parent broken"
	case exitParentGone:
		return "the worker lost its parent"
	}
	return ""
}
