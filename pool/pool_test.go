package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustPool(tb testing.TB, cfg *Config) *Pool {
	tb.Helper()
	p, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { p.Terminate() })
	return p
}

// waitResult waits at most d for r, failing the test on a hang.
func waitResult[T any](t *testing.T, r *Result[T], d time.Duration) (T, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	v, err := r.Get(ctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		t.Fatalf("Get still waiting after %v: the call hangs", d)
	}
	return v, err
}

func TestMapCube(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	got, err := Map(context.Background(), p, cube, []int{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 8, 27, 64, 125, 216}; !slices.Equal(got, want) {
		t.Fatalf("Map = %v, want %v", got, want)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), p, cube, 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close = %v, want ErrClosed", err)
	}
}

func TestApplyAsync(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	var rs []*Result[int]
	for x := 1; x <= 6; x++ {
		rs = append(rs, ApplyAsync(context.Background(), p, cube, x))
	}
	for i, r := range rs {
		v, err := r.Get(context.Background())
		if err != nil || v != (i+1)*(i+1)*(i+1) {
			t.Fatalf("Get = %v, %v", v, err)
		}
		if !r.Ready() {
			t.Fatal("Ready = false after Get")
		}
	}
}

// mapCubes maps cube over 0..n-1 on p and checks every result.
func mapCubes(t *testing.T, p *Pool, n int) {
	t.Helper()
	args := make([]int, n)
	for i := range args {
		args[i] = i
	}
	got, err := Map(context.Background(), p, cube, args)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i*i {
			t.Fatalf("Map(cube)[%d] = %d, want %d", i, v, i*i*i)
		}
	}
}

func TestMapLarge(t *testing.T) {
	mapCubes(t, mustPool(t, &Config{Workers: 2, NoPin: true}), 10000)
}

// TestMapChunkSizeOverWireLimit: a ChunkSize over the wire format's u16
// item count must still give every result, not loop forever.
func TestMapChunkSizeOverWireLimit(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true, ChunkSize: 100000})
	args := make([]int, 70000)
	for i := range args {
		args[i] = i % 1000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Map(ctx, p, cube, args)
	if err != nil {
		t.Fatalf("Map = %v", err)
	}
	for i, v := range got {
		if x := args[i]; v != x*x*x {
			t.Fatalf("got[%d] = %d, want %d", i, v, x*x*x)
		}
	}
}

func TestTaskError(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	_, err := Map(context.Background(), p, failOdd, []int{0, 2, 4, 5, 6, 7})
	var te *TaskError
	args := []int{0, 2, 4, 5, 6, 7}
	if !errors.As(err, &te) || args[te.Index]%2 != 1 || !strings.Contains(te.Error(), fmt.Sprintf("odd %d", args[te.Index])) || te.Pid == 0 {
		t.Fatalf("Map = %v, want TaskError for index 3 or 5", err)
	}
}

func TestPanic(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	pid0, _ := Apply(context.Background(), p, getPid, 0)
	_, err := Map(context.Background(), p, boom, []int{1, 2, 3, 4})
	var te *TaskError
	if !errors.As(err, &te) || !errors.Is(err, ErrPanic) || te.Index != 2 {
		t.Fatalf("Map = %v, want panic TaskError at index 2", err)
	}
	if !strings.Contains(te.Stack, "pool_test") && !strings.Contains(te.Stack, "main_test") {
		t.Fatalf("stack does not show the task:\n%s", te.Stack)
	}
	if !strings.Contains(te.Error(), "nil map") {
		t.Fatalf("error lacks the panic value: %v", te)
	}
	pid1, err := Apply(context.Background(), p, getPid, 0)
	if err != nil || pid1 == pid0 || pid1 == 0 {
		t.Fatalf("after a panic: pid %d, %v; want a new worker (old %d)", pid1, err, pid0)
	}
	if r := p.Stats()[0].Restarts; r != 1 {
		t.Fatalf("Restarts = %d, want 1", r)
	}
}

func TestUnknownFunc(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	ghost := Func[int, int]{e: &entry{name: "test.ghost", sig: 1}}
	_, err := Apply(context.Background(), p, ghost, 1)
	var te *TaskError
	if !errors.As(err, &te) || !errors.Is(err, ErrUnknownFunc) {
		t.Fatalf("Apply(unregistered) = %v, want ErrUnknownFunc", err)
	}
	wrong := Func[int, int]{e: &entry{name: "test.cube", sig: 1}}
	if _, err := Apply(context.Background(), p, wrong, 1); !errors.Is(err, ErrFuncMismatch) {
		t.Fatalf("Apply(mismatched) = %v, want ErrFuncMismatch", err)
	}
	if v, err := Apply(context.Background(), p, cube, 3); v != 27 || err != nil {
		t.Fatalf("pool unusable afterwards: %v, %v", v, err)
	}
}

func TestWorkerErrorAfterRetries(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true, Retries: 0})
	r := ApplyAsync(context.Background(), p, sleep, 10*time.Second)
	var pid int
	for pid == 0 {
		time.Sleep(10 * time.Millisecond)
		pid = p.Stats()[0].Pid
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	killPid(pid)
	_, err := r.Get(context.Background())
	took := time.Since(start)
	var we *WorkerError
	var ee *exec.ExitError
	if !errors.As(err, &we) || we.Signal != os.Kill || we.Pid != pid || !errors.As(err, &ee) {
		t.Fatalf("Get = %v, want WorkerError with SIGKILL wrapping *exec.ExitError", err)
	}
	if took > 200*time.Millisecond {
		t.Fatalf("death noticed after %v, want < 200ms", took)
	}
	t.Logf("SIGKILL noticed and reported after %v", took)
}

func TestTaskTimeout(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true, TaskTimeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := Apply(context.Background(), p, sleep, 5*time.Second)
	if !errors.Is(err, ErrTaskTimeout) {
		t.Fatalf("Apply = %v, want ErrTaskTimeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("timeout took %v", d)
	}
	if v, err := Apply(context.Background(), p, sleep, time.Millisecond); err != nil || v == 0 {
		t.Fatalf("after timeout: %v, %v", v, err)
	}
}

func TestCancel(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true, ChunkSize: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	args := []time.Duration{200 * time.Millisecond, time.Second, time.Second, time.Second, time.Second, time.Second}
	start := time.Now()
	_, err := Map(ctx, p, sleep, args)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Map = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("Map returned after %v, want about 50ms", d)
	}
	// The dropped tasks must not run, not even the one already in the
	// worker's link behind the running one: the next call waits only for
	// the running task's rest (under 200 ms), never for a 1 s task.
	start = time.Now()
	if _, err := Apply(context.Background(), p, cube, 2); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("Apply after cancel took %v: a cancelled task still ran", d)
	}
}

func TestMaxTasksPerWorker(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true, MaxTasksPerWorker: 3, ChunkSize: 2})
	args := make([]int, 10)
	got, err := Map(context.Background(), p, getPid, args)
	if err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	for _, pid := range got {
		count[pid]++
	}
	if len(count) != 4 {
		t.Fatalf("pids %v, want 4 workers (3+3+3+1 tasks)", count)
	}
	for pid, n := range count {
		if n > 3 {
			t.Fatalf("worker %d ran %d tasks, max 3", pid, n)
		}
	}
}

func TestInitializer(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true, Initializer: initOnce})
	got, err := Map(context.Background(), p, initCalledBy, make([]struct{}, 8))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range got {
		if n != 1 {
			t.Fatalf("initializer ran %d times in a worker, want 1", n)
		}
	}
	if _, err := New(&Config{Workers: 1, NoPin: true, Initializer: initFail}); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("New with failing initializer = %v", err)
	}
}

func TestConcurrentMaps(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	errc := make(chan error, 8)
	for g := range 8 {
		go func() {
			args := make([]int, 500)
			for i := range args {
				args[i] = g*1000 + i
			}
			got, err := Map(context.Background(), p, cube, args)
			if err == nil {
				for i, v := range got {
					if v != args[i]*args[i]*args[i] {
						err = errors.New("wrong result")
					}
				}
			}
			errc <- err
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func TestImapOrder(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true, ChunkSize: 1})
	// Later items finish first.
	args := []delayed{{0, 80 * time.Millisecond}, {1, 40 * time.Millisecond}, {2, 20 * time.Millisecond}, {3, 0}, {4, 0}}
	var got []int
	for i, err := range Imap(context.Background(), p, sleepEcho, slices.Values(args)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, i)
	}
	if want := []int{0, 1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("Imap yielded %v, want %v", got, want)
	}
	got = got[:0]
	for r, err := range ImapUnordered(context.Background(), p, sleepEcho, slices.Values(args)) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Index != r.Value {
			t.Fatalf("ImapUnordered yielded index %d for the value of item %d", r.Index, r.Value)
		}
		got = append(got, r.Value)
	}
	if got[0] == 0 || len(got) != 5 {
		t.Fatalf("ImapUnordered yielded %v, want the slow item 0 after faster ones", got)
	}
	// Breaking out early is allowed and leaves the pool usable.
	for range Imap(context.Background(), p, sleepEcho, slices.Values(args)) {
		break
	}
	sq := []int{5, 1, 4, 2, 3}
	got = got[:0]
	for v, err := range Imap(context.Background(), p, cube, slices.Values(sq)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if want := []int{125, 1, 64, 8, 27}; !slices.Equal(got, want) {
		t.Fatalf("Imap = %v, want %v", got, want)
	}
	var un []int
	for r, err := range ImapUnordered(context.Background(), p, cube, slices.Values(sq)) {
		if err != nil || r.Value != sq[r.Index]*sq[r.Index]*sq[r.Index] {
			t.Fatalf("ImapUnordered yielded %+v, %v; want the cube of item %d", r, err, r.Index)
		}
		un = append(un, r.Value)
	}
	slices.Sort(un)
	if want := []int{1, 8, 27, 64, 125}; !slices.Equal(un, want) {
		t.Fatalf("ImapUnordered sorted = %v, want %v", un, want)
	}
}

func TestMissingInit(t *testing.T) {
	t.Setenv("MPROC_TEST_NOINIT", "1")
	start := time.Now()
	_, err := New(&Config{Workers: 1, NoPin: true})
	if !errors.Is(err, ErrNoInit) {
		t.Fatalf("New = %v, want ErrNoInit", err)
	}
	// A child that exits is reported at once; one that hangs at the
	// handshake deadline (1s), plus the time to kill and reap it.
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("took %v, want about 1s at most", d)
	}
	t.Logf("after %v: %v", time.Since(start), err)
}

func TestRefuseInWorker(t *testing.T) {
	t.Setenv(envWorker, "1")
	if _, err := New(&Config{Workers: 1, NoPin: true}); !errors.Is(err, ErrInWorker) {
		t.Fatalf("New = %v, want ErrInWorker", err)
	}
}

// sizedArgs makes n encoded arguments of size bytes each, sharing one
// buffer (only their ends matter to the chunker).
func sizedArgs(n, size int) *encoded {
	a := &encoded{buf: make([]byte, size), ends: make([]int, n)}
	for i := range a.ends {
		a.ends[i] = (i + 1) * size
	}
	return a
}

func TestChunkSizes(t *testing.T) {
	tests := []struct {
		name             string
		n, size, workers int
		itemBytes        int
		want             []int // chunk lengths
	}{
		{"fixed size, remainder last", 10, 4, 2, 8, []int{4, 4, 2}},
		{"guided shrinks to single tasks", 20, 0, 2, 8, []int{5, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1}},
		{"guided with fewer items than workers", 3, 0, 4, 8, []int{1, 1, 1}},
		{"no items", 0, 0, 2, 8, nil},
		{"fixed size over maxChunk is capped", 10000, 100000, 2, 8, []int{4096, 4096, 1808}},
		{"fixed size cut by bytes", 10, 10, 2, 1 << 20, []int{4, 4, 2}},
		{"an item over softMessage travels alone", 3, 0, 1, softMessage + 1, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			next := 0
			for lo, n := range chunkSizes(sizedArgs(tt.n, tt.itemBytes), tt.size, tt.workers) {
				if lo != next {
					t.Fatalf("chunk starts at %d, want %d (contiguous)", lo, next)
				}
				next += n
				got = append(got, n)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("chunkSizes(%d, %d, %d) = %v, want %v", tt.n, tt.size, tt.workers, got, tt.want)
			}
		})
	}
	// A large guided call is batched into few messages, none over maxChunk.
	count := 0
	for _, n := range chunkSizes(sizedArgs(1_000_000, 8), 0, 2) {
		if n > maxChunk {
			t.Fatalf("chunk of %d items, over maxChunk %d", n, maxChunk)
		}
		count++
	}
	if count > 400 {
		t.Errorf("1e6 items in %d chunks, want a few hundred at most", count)
	}
}
