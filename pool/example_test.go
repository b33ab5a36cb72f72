package pool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mproc/mproc/ipc"
	"github.com/mproc/mproc/pool"
)

// Functions run by workers are registered at package initialisation, never
// inside main: a worker re-executes the binary and never runs main past
// pool.Init.
var cube = pool.Register("example.cube", func(x int) (int, error) { return x * x * x, nil })

// The seed's Pool.map: results come back in the order of the arguments.
// (In a program, main starts with pool.Init(); here TestMain does.)
func ExampleMap() {
	p, err := pool.New(&pool.Config{Workers: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	out, err := pool.Map(context.Background(), p, cube, []int{1, 2, 3, 4, 5, 6})
	fmt.Println(out, err)
	// Output: [1 8 27 64 125 216] <nil>
}

// The seed's Pool.apply_async: submit everything, then collect.
func ExampleApplyAsync() {
	p, err := pool.New(&pool.Config{Workers: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	var results []*pool.Result[int]
	for x := 1; x <= 6; x++ {
		results = append(results, pool.ApplyAsync(context.Background(), p, cube, x))
	}
	var output []int
	for _, r := range results {
		v, err := r.Get(context.Background())
		if err != nil {
			fmt.Println(err)
			return
		}
		output = append(output, v)
	}
	fmt.Println(output)
	// Output: [1 8 27 64 125 216]
}

func ExampleImap() {
	p, err := pool.New(&pool.Config{Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	for v, err := range pool.Imap(context.Background(), p, cube, slices.Values([]int{3, 1, 2})) {
		fmt.Println(v, err)
	}
	// Output:
	// 27 <nil>
	// 1 <nil>
	// 8 <nil>
}

type tagged struct {
	Pos int
	S   string
}

type label struct {
	Pos    int
	Output *ipc.Queue[tagged] // travels as its segment id
}

var putLabel = pool.Register("example.label", func(a label) (struct{}, error) {
	return struct{}{}, a.Output.Put(context.Background(), tagged{a.Pos, fmt.Sprintf("item-%d", a.Pos)})
})

// The seed's Process example with positions: four processes put into one
// queue in whatever order they finish; the positions restore the order.
func ExampleStart() {
	q, err := ipc.NewQueue[tagged](nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Detach()
	var procs []*pool.Process
	for x := range 4 {
		p, err := pool.Start(putLabel, label{Pos: x, Output: q})
		if err != nil {
			fmt.Println(err)
			return
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			fmt.Println(err)
		}
	}
	var results []tagged
	for range procs {
		r, _ := q.Get(context.Background())
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b tagged) int { return a.Pos - b.Pos })
	fmt.Println(results)
	// Output: [{0 item-0} {1 item-1} {2 item-2} {3 item-3}]
}

// ErrNotFound and *LimitError are this program's errors; registered at
// package init, they keep their identity when a worker returns them.
var ErrNotFound = errors.New("not found")

type LimitError struct{ Limit int }

func (e *LimitError) Error() string { return fmt.Sprintf("over the limit of %d", e.Limit) }

func init() {
	pool.RegisterError("example.notfound", ErrNotFound)
	pool.RegisterErrorType[*LimitError]("example.limit")
}

var lookup = pool.Register("example.lookup", func(id int) (string, error) {
	switch {
	case id > 100:
		return "", &LimitError{Limit: 100}
	case id%2 == 1:
		return "", fmt.Errorf("user %d: %w", id, ErrNotFound)
	}
	return fmt.Sprint("user-", id), nil
})

// Python re-raises a worker's exception with its type; here errors.Is and
// errors.As see the worker's registered errors through the *TaskError.
func ExampleRegisterError() {
	p, err := pool.New(&pool.Config{Workers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	ctx := context.Background()
	_, err = pool.Apply(ctx, p, lookup, 7)
	var te *pool.TaskError
	errors.As(err, &te) // te.Pid, te.Index, te.Func say where
	fmt.Println(errors.Is(err, ErrNotFound), te.Err)
	_, err = pool.Apply(ctx, p, lookup, 500)
	var le *LimitError
	fmt.Println(errors.As(err, &le), le.Limit)
	// Output:
	// true user 7: not found
	// true 100
}

// waitOrCancel takes a context: the worker cancels it when the call ends
// early.
var waitOrCancel = pool.RegisterCtx("example.wait", func(ctx context.Context, d time.Duration) (string, error) {
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(d):
		return "done", nil
	}
})

// Cancelling a call reaches its running task: the hour-long task returns at
// once, and the only worker is free for the next call.
func ExampleResult_Cancel() {
	p, err := pool.New(&pool.Config{Workers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	ctx := context.Background()
	r := pool.ApplyAsync(ctx, p, waitOrCancel, time.Hour)
	time.Sleep(10 * time.Millisecond) // let it start
	r.Cancel()
	_, err = r.Get(ctx)
	fmt.Println(err)
	fmt.Println(pool.Apply(ctx, p, waitOrCancel, time.Millisecond))
	// Output:
	// context canceled
	// done <nil>
}

// Imap and ImapUnordered pull their input lazily, as Python's imap with a
// buffersize: an endless generator is fine. ImapUnordered yields each
// result with its index.
func ExampleImapUnordered() {
	p, err := pool.New(&pool.Config{Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	naturals := func(yield func(int) bool) {
		for i := 0; ; i++ {
			if !yield(i) {
				return
			}
		}
	}
	cubes := make([]int, 5)
	seen := 0
	for r, err := range pool.ImapUnordered(context.Background(), p, cube, naturals) {
		if err != nil {
			fmt.Println(err)
			return
		}
		if r.Index < len(cubes) {
			cubes[r.Index] = r.Value
			seen++
		}
		if seen == len(cubes) {
			break // ends the call: what is left is dropped
		}
	}
	fmt.Println(cubes)
	// Output: [0 1 8 27 64]
}

// A progress hook, as tqdm over Python's imap: called as tasks finish.
func ExampleProgress() {
	p, err := pool.New(&pool.Config{Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	report := pool.Progress(func(done, total int) {
		if done == total {
			fmt.Printf("%d/%d tasks\n", done, total)
		}
	})
	out, err := pool.Map(context.Background(), p, cube, []int{1, 2, 3, 4, 5, 6}, report)
	fmt.Println(out, err)
	// Output:
	// 6/6 tasks
	// [1 8 27 64 125 216] <nil>
}

// Stats are mpire's worker insights: per worker, its start-up time, time
// working and waiting, tasks run, restarts and slowest task messages.
func ExamplePool_Stats() {
	p, err := pool.New(&pool.Config{Workers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	if _, err := pool.Map(context.Background(), p, cube, []int{1, 2, 3, 4, 5, 6}, pool.ChunkSize(2)); err != nil {
		fmt.Println(err)
		return
	}
	s := p.Stats()[0]
	fmt.Println("tasks:", s.Tasks, "restarts:", s.Restarts, "started:", s.StartUp > 0)
	slow := s.Slowest[0] // of the three messages; Index and Took say which and how long
	fmt.Println(len(s.Slowest), "messages timed; the slowest:", slow.Func, slow.Tasks, "tasks")
	// Output:
	// tasks: 6 restarts: 0 started: true
	// 3 messages timed; the slowest: example.cube 2 tasks
}

// flaky's worker dies the first time it runs a task (it finds no marker
// file): a crash, an OOM kill. Its tasks may run twice, so it says so.
var flaky = pool.Register("example.flaky", func(marker string) (string, error) {
	if _, err := os.Stat(marker); err != nil {
		os.WriteFile(marker, nil, 0o600)
		os.Exit(1) // the worker dies mid-task
	}
	return "ran again on a new worker", nil
}, pool.Idempotent())

// A task whose worker died is run again only if its function is
// Idempotent, up to Config.Retries times; otherwise it fails with a
// *WorkerError, as in Python.
func ExampleIdempotent() {
	p, err := pool.New(&pool.Config{Workers: 1, Retries: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	dir, err := os.MkdirTemp("", "flaky")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	fmt.Println(pool.Apply(context.Background(), p, flaky, filepath.Join(dir, "marker")))
	fmt.Println("restarts:", p.Stats()[0].Restarts)
	// Output:
	// ran again on a new worker <nil>
	// restarts: 1
}

// MapAsync returns at once; the caller's context bounds the whole call.
// When it ends, tasks not yet begun are dropped and a running RegisterCtx
// task sees its own context end.
func ExampleMapAsync() {
	p, err := pool.New(&pool.Config{Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r := pool.MapAsync(ctx, p, waitOrCancel, []time.Duration{time.Millisecond, time.Hour})
	_, err = r.Get(context.Background())
	fmt.Println(err)
	// Output: context deadline exceeded
}

// Python takes chunksize and timeouts per call; so does the pool, with
// call options. Without them a call uses the pool's Config.
func ExampleCallOption() {
	p, err := pool.New(&pool.Config{Workers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	ctx := context.Background()
	out, err := pool.Map(ctx, p, cube, []int{1, 2, 3, 4}, pool.ChunkSize(2))
	fmt.Println(out, err)
	_, err = pool.Apply(ctx, p, waitOrCancel, time.Hour, pool.TaskTimeout(20*time.Millisecond))
	fmt.Println(errors.Is(err, pool.ErrTaskTimeout))
	_, err = pool.Map(ctx, p, cube, []int{1}, pool.ChunkSize(-1))
	fmt.Println(err != nil)
	// Output:
	// [1 8 27 64] <nil>
	// true
	// true
}

// warmUp is every worker's Initializer: it runs once per worker before its
// first task, as Python's Pool(initializer=...) does.
var warmUp = pool.Register("example.warmup", func(struct{}) (struct{}, error) {
	table = make([]int, 1000)
	for i := range table {
		table[i] = i * i
	}
	return struct{}{}, nil
})

var table []int // filled in each worker by warmUp

var square = pool.Register("example.square", func(x int) (int, error) { return table[x], nil })

func ExampleConfig_initializer() {
	p, err := pool.New(&pool.Config{Workers: 2, Initializer: warmUp})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	fmt.Println(pool.Map(context.Background(), p, square, []int{3, 999}))
	_, err = pool.New(&pool.Config{Workers: 2, MaxTasksPerWorker: -1})
	fmt.Println(err != nil) // nonsense is refused, not taken for "never"
	// Output:
	// [9 998001] <nil>
	// true
}
