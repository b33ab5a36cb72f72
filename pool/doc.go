// Package pool runs Go functions in worker processes: Python's
// multiprocessing.Process and multiprocessing.Pool for Go, with the failure
// behaviour Python lacks. A worker is this program's own binary,
// re-executed; tasks and results travel through shared memory.
//
// # Init: Go's `if __name__ == "__main__":`
//
// A worker starts as a copy of the program, so the program must say where
// the worker takes over. Call Init first in main, and first in TestMain of a
// test binary that uses pools:
//
//	var cube = pool.Register("cube", func(x int) (int, error) { return x * x * x, nil })
//
//	func main() {
//		pool.Init() // in a worker: serves tasks, never returns
//		p, err := pool.New(nil)
//		...
//		out, err := pool.Map(ctx, p, cube, []int{1, 2, 3, 4, 5, 6}) // [1 8 27 64 125 216]
//	}
//
// A binary that forgets Init gets ErrNoInit from New or Start as soon as
// its first worker exits, never a hang and never a chain of processes
// starting processes (in a test binary, children run with -test.run=^$ so
// that a missing hook cannot re-run the suite).
//
// Functions registered inside main cannot exist in a worker: the worker
// never runs main past Init. Register at package initialisation (a
// package-level var or an init function), under an explicit name.
//
// # Sharing large inputs without copying
//
// Python pickles a task's arguments into every task. Here a task argument
// may hold an *shm.Array (or an ipc.Queue): only its segment id travels;
// the worker maps the same memory on first use (its descriptor is passed
// over the worker's control socket), so n×d samples placed in an
// shm.Array once are read in place by every worker, and results can be
// written in place into a shared output array:
//
//	samples, _ := shm.NewArray[float64](n * d) // fill, then Freeze
//	type job struct {
//		Samples *shm.Array[float64]
//		Lo, Hi  int
//	}
//	pool.Map(ctx, p, evalRange, jobs) // each job is a few bytes
//
// # How work reaches the workers
//
// Apply and single items are pushed: each worker's link holds at most two
// task messages, the one running and the next. A Map, MapAsync or Imap
// batch of several items is pulled instead: it is published once on a
// board (a shared segment, reused; at most four per pool) and every worker
// claims ranges of items from it until none are left, guided sizes by
// default (what is left over twice the workers) or ChunkSize. Results come
// back without waking the parent, except each worker's last; the parent's
// collectors wait without a system call. A blocking Apply, where a CPU is
// idle for it, polls its worker's result ring for a short learned time and
// takes its result itself, so that no thread has to be woken on the way
// back (a wake-up of an idle vCPU costs tens of microseconds on a VM).
// Calls with a TaskTimeout, pools
// with MaxTasksPerWorker and calls too large for a board (2 MiB of encoded
// arguments) are pushed in chunks. A worker that dies during a pulled call
// loses nothing: once every worker is done with the call, the items without
// a result run again, and only those its claim record says may have begun
// count as attempts (Retries, Idempotent).
//
// # Failures
//
// A task's error comes back as a *TaskError (task index, worker pid; a
// panic also carries the worker's stack, and that worker is replaced). A
// worker killed mid-task is noticed within milliseconds and replaced, and
// the caller gets a *WorkerError naming pid and signal (exit code 2 is a Go
// runtime crash in the worker). As in Python, a task that began is never
// run twice unless its function was registered with the Idempotent option:
// then it runs again up to Config.Retries times (zero by default). A task
// the dead worker had not begun is run elsewhere at no cost to its
// retries. Per call, the ChunkSize, TaskTimeout, Retries and Progress
// options override the Config. Config.TaskTimeout kills and replaces a
// runaway worker (a RegisterCtx task is asked to stop first). A call that
// fails (Map stops at its first error) or is cancelled stops costing CPU:
// its items not yet begun are dropped, in the workers too, and its running
// RegisterCtx tasks see their context cancelled. If no
// worker can be started any more (its Initializer keeps failing, say),
// every pending and later call fails with an error wrapping the last
// start-up failure, and Close returns it. Workers die with their parent
// (parent-death signal plus an EOF check on their control socket). Close
// and Terminate reap every worker; a Pool or Process dropped without them
// is cleaned up by the garbage collector as a safety net.
//
// # Limits
//
//   - One argument or result encodes to at most 64 MiB; a larger one fails
//     its item with a *TaskError wrapping ErrTooLarge. Messages between
//     parent and worker are cut near 4 MiB (many small items in one, a large
//     item alone) and never exceed 65 MiB.
//   - Process arguments must encode to at most 64 KiB.
//   - Put bulk data in an shm.Array: only its handle travels.
//
// # What the process boundary protects against
//
// Workers protect the parent from bugs, not from attackers: they run with
// the parent's uid and could signal it or read /proc/<ppid>/mem. What is
// guaranteed against a buggy worker, whatever it writes into the shared
// memory it can reach: the parent never panics, hangs or runs out of
// memory because of those bytes. Every length and count it reads there is
// checked (message sizes, fragment totals, item counts, decoded element
// counts against the bytes that hold them); a malformed message ends that
// worker, its running task is retried or failed with an error, and the
// worker is replaced. A closed shm.Array is unmapped in every worker it was
// served to, before that worker's next task.
//
// # Caveats
//
//   - Linux only; elsewhere New and Start return an error wrapping
//     errors.ErrUnsupported.
//   - Arguments and results are copied through the codec: exported struct
//     fields only, no channels or funcs. A task's error crosses as its
//     text unless its sentinel or type was registered (RegisterError,
//     RegisterErrorType): then errors.Is and errors.As work on it.
//   - A running task is interrupted only if it cooperates: a function
//     registered with RegisterCtx sees its context cancelled (within about
//     a millisecond) when its call ends early; any other runs to its end.
//     A cancelled call drops its tasks not yet begun; a task timeout kills
//     the worker.
//   - Each worker holds up to two task messages; a cancelled call's
//     messages are skipped when the running task returns.
//   - A task must not keep slices of a shared array, or goroutines using
//     one, past its return: the worker unmaps arrays the parent closed
//     between tasks.
//   - Process arguments must encode to at most 64 KiB; put bulk data in an
//     shm.Array.
//   - A Pool that is never closed keeps its workers until this process
//     exits (they die with it). Call Close or Terminate.
//   - Workers are pinned to one CPU each by default (Config.NoPin turns it
//     off): a worker's own goroutines share that CPU.
//   - Workers die with their parent through the parent-death signal
//     (PR_SET_PDEATHSIG), which the kernel ties to the thread that forked
//     them, not to the process. Workers are forked from a thread that is
//     not locked to any goroutine, but Go may later hand that thread to a
//     goroutine that calls runtime.LockOSThread; if that goroutine exits
//     while still locked, the thread exits and every worker it forked is
//     killed (go.dev/issue/27505). Do not exit goroutines that hold a
//     locked thread in a program using pools, or unlock them first.
package pool
