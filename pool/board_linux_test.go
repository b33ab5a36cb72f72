package pool

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mproc/mproc/shm"
)

// runArg is a raw (fixed-size, pointer-free) argument: the shared run
// counters' handle and the item's index.
type runArg struct {
	Runs [16]byte // shm.Array[int32] of run counts, as MarshalBinary gives it
	I    int
}

func countRun(a runArg) (int, error) {
	var runs shm.Array[int32]
	if err := runs.UnmarshalBinary(a.Runs[:]); err != nil {
		return 0, err
	}
	s := runs.Slice()
	if a.I < 0 || a.I >= len(s) {
		return 0, errors.New("index out of range")
	}
	atomic.AddInt32(&s[a.I], 1)
	for end := time.Now().Add(2 * time.Microsecond); time.Now().Before(end); {
	}
	return 3*a.I + 1, nil
}

var (
	countRuns     = Register("test.countruns", countRun, Idempotent())
	countRunsOnce = Register("test.countrunsonce", countRun) // not idempotent
)

func runArgs(t *testing.T, n int) (*shm.Array[int32], []runArg) {
	t.Helper()
	runs, h := sharedCounters(t, n)
	args := make([]runArg, n)
	for i := range args {
		args[i].Runs, args[i].I = h, i
	}
	return runs, args
}

// sharedCounters makes n shared int32 counters, closed when the test ends,
// and their handle as a raw task argument carries it.
func sharedCounters(t *testing.T, n int) (*shm.Array[int32], [16]byte) {
	t.Helper()
	a, err := shm.NewArray[int32](n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	var h [16]byte
	b, _ := a.MarshalBinary()
	copy(h[:], b)
	return a, h
}

// killer SIGKILLs a random live worker of p every 5 to 45 ms until stop
// is called, or the test ends; stop returns how many it killed.
func killer(t *testing.T, p *Pool) (stop func() int) {
	quit, out := make(chan struct{}), make(chan int, 1)
	go func() {
		kills := 0
		defer func() { out <- kills }()
		for {
			select {
			case <-quit:
				return
			case <-time.After(time.Duration(5+rand.IntN(40)) * time.Millisecond):
			}
			st := p.Stats()
			if pid := st[rand.IntN(len(st))].Pid; pid != 0 && killPid(pid) == nil {
				kills++
			}
		}
	}()
	stop = sync.OnceValue(func() int { close(quit); return <-out })
	t.Cleanup(func() { stop() })
	return stop
}

// TestPulledMapsSurviveRandomKills: workers SIGKILLed at random moments
// during pulled Maps of 100,000 items; every result arrives, exactly once,
// and right.
func TestPulledMapsSurviveRandomKills(t *testing.T) {
	// Kills every 25 ms on average are far more than any real failure
	// rate: allow enough retries that an item never runs out of them.
	p := mustPool(t, &Config{Workers: 3, NoPin: true, Retries: 100})
	const n = 100_000
	_, args := runArgs(t, n)
	stop := killer(t, p)
	for round := 0; round < 3; round++ {
		got, err := waitResult(t, MapAsync(context.Background(), p, countRuns, args), 60*time.Second)
		if err != nil {
			t.Fatalf("round %d: Map = %v", round, err)
		}
		for i, v := range got {
			if v != 3*i+1 {
				t.Fatalf("round %d: result %d = %d, want %d", round, i, v, 3*i+1)
			}
		}
	}
	// Imap yields each index: none may come twice or be missing.
	seen := make([]int, n)
	for r, err := range ImapUnordered(context.Background(), p, countRuns, slices.Values(args)) {
		if err != nil {
			t.Fatalf("ImapUnordered item %d: %v", r.Index, err)
		}
		if r.Index < 0 || r.Index >= n || r.Value != 3*r.Index+1 {
			t.Fatalf("ImapUnordered yielded %+v", r)
		}
		seen[r.Index]++
	}
	if k := stop(); k == 0 {
		t.Fatal("no worker was killed: the test proved nothing")
	} else {
		t.Logf("%d workers killed", k)
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("ImapUnordered yielded index %d %d times, want once", i, c)
		}
	}
}

// TestPulledNonIdempotentNeverRunsTwice: with a function that is not
// Idempotent, a killed worker's task fails with a *WorkerError and no item
// ever runs twice; every item that has a result ran exactly once.
func TestPulledNonIdempotentNeverRunsTwice(t *testing.T) {
	p := mustPool(t, &Config{Workers: 3, NoPin: true, Retries: 10})
	const n = 100_000
	runs, args := runArgs(t, n)
	stop := killer(t, p)
	failed := 0
	for r, err := range ImapUnordered(context.Background(), p, countRunsOnce, slices.Values(args), ChunkSize(64)) {
		if err != nil {
			var we *WorkerError
			if !errors.As(err, &we) {
				t.Fatalf("item %d: %v, want a *WorkerError", r.Index, err)
			}
			failed++
			continue
		}
		if got := atomic.LoadInt32(&runs.Slice()[r.Index]); got != 1 || r.Value != 3*r.Index+1 {
			t.Fatalf("item %d: value %d after %d runs, want %d after 1", r.Index, r.Value, got, 3*r.Index+1)
		}
	}
	k := stop()
	for i, c := range runs.Slice() {
		if c > 1 {
			t.Fatalf("item %d ran %d times: it is not Idempotent", i, c)
		}
	}
	if k == 0 {
		t.Fatal("no worker was killed: the test proved nothing")
	}
	t.Logf("%d workers killed, %d items failed", k, failed)
}

// TestPulledCallsUseBoards: back-to-back Maps reuse the pool's boards
// (no segment per call), and the boards go with the pool.
func TestPulledCallsUseBoards(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	_, args := runArgs(t, 1000)
	for range 20 {
		if _, err := Map(context.Background(), p, countRuns, args); err != nil {
			t.Fatal(err)
		}
	}
	p.core.mu.Lock()
	boards := len(p.core.allBoards)
	for _, b := range p.core.allBoards {
		// Every participant counted itself out: the last one woke the
		// parent, and none is left thinking another will.
		if w := b.hdr.working.Load(); w != 0 {
			t.Errorf("a board's working count is %d after its calls ended, want 0", w)
		}
	}
	p.core.mu.Unlock()
	if boards < 1 || boards > maxBoards {
		t.Fatalf("%d boards after 20 pulled Maps, want 1..%d", boards, maxBoards)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(p.core.allBoards); n != 0 {
		t.Fatalf("%d boards left after Close", n)
	}
}

// TestParkedCollectorIsWoken: an idle pool's collectors park (no system
// call, no poll); the worker that commits a result takes the park back and
// wakes them through the control socket.
func TestParkedCollectorIsWoken(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	p.core.mu.Lock()
	l := p.core.slots[0].l.(*shmLink)
	p.core.mu.Unlock()
	for round := range 5 {
		waitFor(t, 5*time.Second, func() bool { return l.ctl.parked.Load() == 1 })
		woken := l.woken.Load()
		got, err := waitResult(t, ApplyAsync(context.Background(), p, cube, round), 5*time.Second)
		if err != nil || got != round*round*round {
			t.Fatalf("round %d: Apply = %d, %v", round, got, err)
		}
		if l.woken.Load() == woken {
			t.Fatalf("round %d: the result came without the worker waking the parked collector", round)
		}
	}
}

// waitFor polls cond every millisecond and fails the test after d.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("condition not met within %v", d)
		}
	}
}

// crashAt3 ends its worker as a Go fatal error does, at item 3.
var crashAt3 = Register("test.crashat3", func(i int) (int, error) {
	if i == 3 {
		os.Exit(2)
	}
	time.Sleep(2 * time.Millisecond)
	return i, nil
})

// TestCloseAfterCrashDuringPull: a worker that dies during pulled Imap
// batches leaves pull messages queued for its replacement; once their
// calls are over they must not hold back Close (found by the demo, where
// Close hung for good).
func TestCloseAfterCrashDuringPull(t *testing.T) {
	for round := range 5 {
		p := mustPool(t, &Config{Workers: 2, NoPin: true})
		failed := 0
		for _, err := range Imap(context.Background(), p, crashAt3, slices.Values([]int{0, 1, 2, 3, 4, 5, 6, 7}), ChunkSize(1)) {
			if err != nil {
				failed++
			}
		}
		if failed != 1 {
			t.Fatalf("round %d: %d items failed, want 1 (the crashing one)", round, failed)
		}
		done := make(chan error, 1)
		go func() { done <- p.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Close = %v", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Close hangs", round)
		}
	}
}

// onePerCPULocked: idle workers first, one per CPU (unpinned ones all
// now), the rest later.
func TestOnePerCPU(t *testing.T) {
	p := &core{place: []Placement{{CPU: 0}, {CPU: 1}, {CPU: 0}, {CPU: 1}, {CPU: -1}}}
	var ws []*slot
	for i := range p.place {
		ws = append(ws, &slot{idx: i})
	}
	ws[0].inflight = []*chunk{{}} // busy: after the idle ones
	now, later := p.onePerCPULocked(ws)
	idxs := func(s []*slot) (out []int) {
		for _, w := range s {
			out = append(out, w.idx)
		}
		return out
	}
	if got, want := idxs(now), []int{1, 2, 4}; !slices.Equal(got, want) {
		t.Errorf("now = %v, want %v", got, want)
	}
	if got, want := idxs(later), []int{3, 0}; !slices.Equal(got, want) {
		t.Errorf("later = %v, want %v", got, want)
	}
}

// TestPulledCallRecruitsTheOthers: on a pool with more pinned workers
// than CPUs, a pulled call that runs long (here its tasks wait) is joined
// by the workers that share a CPU, and every result comes once.
func TestPulledCallRecruitsTheOthers(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2 * runtime.NumCPU()})
	args := make([]time.Duration, 20*len(p.Stats()))
	for i := range args {
		args[i] = 5 * time.Millisecond
	}
	out, err := Map(context.Background(), p, sleep, args)
	if err != nil || len(out) != len(args) {
		t.Fatalf("Map = %d results, %v", len(out), err)
	}
	for _, s := range p.Stats() {
		if s.Tasks == 0 {
			t.Errorf("worker %d (CPU %d) ran none of %d waiting tasks: it was never recruited", s.Worker, s.CPU, len(args))
		}
	}
}

// TestBoardItems publishes framed and raw (fixed-size) arguments on a board
// and reads them back as a worker does; a header whose stride does not fit
// the board is refused, not read past.
func TestBoardItems(t *testing.T) {
	framed := &encoded{}
	for i := range 5 {
		item := []byte{byte(i), 'x'}
		framed.buf = append(framed.buf, item[:1+i%2]...)
		framed.ends = append(framed.ends, len(framed.buf))
	}
	raw := &encoded{buf: []byte("aaaabbbbccccddddeeee"), stride: 4}
	for _, args := range []*encoded{framed, raw} {
		b, err := newBoard()
		if err != nil {
			t.Fatal(err)
		}
		defer b.close()
		b.publish(7, args, 2)
		wb, err := openWorkerBoard(pullSpec{board: b.seg.ID(), n: args.len(), workers: 2}, 7)
		if err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		for {
			lo, hi, ok := wb.claim(2, 2)
			if !ok {
				break
			}
			body, err := wb.items(lo, hi)
			if err != nil {
				t.Fatal(err)
			}
			for range hi - lo {
				var item []byte
				if wb.stride > 0 {
					item, body = body[:wb.stride], body[wb.stride:]
				} else if item, body, err = nextItem(body); err != nil {
					t.Fatal(err)
				}
				got = append(got, item)
			}
			if len(body) != 0 {
				t.Fatalf("items %d..%d: %d bytes left over", lo, hi, len(body))
			}
		}
		if len(got) != args.len() {
			t.Fatalf("stride %d: read %d items, want %d", args.stride, len(got), args.len())
		}
		for i, item := range got {
			if string(item) != string(args.item(i)) {
				t.Errorf("stride %d: item %d = %q, want %q", args.stride, i, item, args.item(i))
			}
		}
		b.hdr.stride.Store(1 << 30)
		if _, err := openWorkerBoard(pullSpec{board: b.seg.ID(), n: args.len(), workers: 2}, 7); !errors.Is(err, errBrokenPeer) {
			t.Errorf("a board with a stride of 1 GiB: %v, want errBrokenPeer", err)
		}
	}
}

// seenArg is an item of awaitOthers: item 0 waits until the caller has
// counted Need results in the shared counter Seen (an shm.Array[int32]).
type seenArg struct {
	Seen [16]byte
	I    int
	Need int32
}

var awaitOthers = Register("test.awaitothers", func(a seenArg) (bool, error) {
	if a.I != 0 {
		return true, nil
	}
	var seen shm.Array[int32]
	if err := seen.UnmarshalBinary(a.Seen[:]); err != nil {
		return false, err
	}
	// Well under idleParkSlice: a parked collector must be woken by the
	// results, not find them at the end of its slice.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if atomic.LoadInt32(&seen.Slice()[0]) >= a.Need {
			return true, nil
		}
	}
	return false, nil // the other results never reached the caller
})

// TestPulledResultsStream: a pulled call whose caller consumes results as
// they come (ImapUnordered, Progress) gets each worker's results while
// another item still runs, not all at the end: item 0 runs until the
// caller has counted the four others.
func TestPulledResultsStream(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true, ChunkSize: 1})
	seen, h := sharedCounters(t, 1)
	args := make([]seenArg, 5)
	for i := range args {
		args[i] = seenArg{Seen: h, I: i, Need: 4}
	}
	count := func() { atomic.AddInt32(&seen.Slice()[0], 1) }

	for r, err := range ImapUnordered(context.Background(), p, awaitOthers, slices.Values(args)) {
		if err != nil || !r.Value {
			t.Fatalf("ImapUnordered item %d = %v, %v: the others' results did not stream", r.Index, r.Value, err)
		}
		count()
	}
	atomic.StoreInt32(&seen.Slice()[0], 0)
	got, err := waitResult(t, MapAsync(context.Background(), p, awaitOthers, args, Progress(func(done, total int) { count() })), 10*time.Second)
	if err != nil || !got[0] {
		t.Fatalf("Map with Progress: item 0 = %v, %v: the others' results did not stream", got[0], err)
	}
}

// TestPulledCallEndWakesLinear: at the end of a pulled call each
// participant's collector is rung about once, not once per participant
// that finished before it (15 rings for 6 workers, growing as N²: on 16
// CPUs the parent spent 1.5 ms of CPU per 0.6 ms sweep).
func TestPulledCallEndWakesLinear(t *testing.T) {
	const workers = 6
	p := mustPool(t, &Config{Workers: workers, NoPin: true})
	args := make([]time.Duration, 120)
	for i := range args {
		args[i] = 200 * time.Microsecond
	}
	rings := func() (n int64) {
		for _, w := range p.core.slots {
			p.core.mu.Lock()
			sl, _ := w.l.(*shmLink)
			p.core.mu.Unlock()
			if sl != nil {
				n += sl.woken.Load()
			}
		}
		return n
	}
	if _, err := Map(context.Background(), p, sleep, args, ChunkSize(1)); err != nil {
		t.Fatal(err)
	}
	var most int64
	for round := range 5 {
		before := rings()
		if _, err := Map(context.Background(), p, sleep, args, ChunkSize(1)); err != nil {
			t.Fatal(err)
		}
		n := rings() - before
		t.Logf("round %d: %d rings", round, n)
		most = max(most, n)
	}
	if most > workers+2 {
		t.Fatalf("up to %d collector rings per call of %d participants, want about one each", most, workers)
	}
}

// Defect: a pushed chunk queued behind a pulled call's participation never
// started its clock when that participation ended, so its task timeout
// never fired (a chaos run hung in ExampleCallOption: Map, then Apply with
// TaskTimeout on the same worker).
func TestTimeoutBehindPulledCall(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	ctx := context.Background()
	args := []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	m := MapAsync(ctx, p, sleep, args) // pulled: its pull message goes first
	a := ApplyAsync(ctx, p, sleep, time.Minute, TaskTimeout(30*time.Millisecond))
	if _, err := waitResult(t, m, 10*time.Second); err != nil {
		t.Fatalf("Map = %v", err)
	}
	start := time.Now()
	if _, err := waitResult(t, a, 10*time.Second); !errors.Is(err, ErrTaskTimeout) {
		t.Fatalf("Apply behind the pulled call = %v, want ErrTaskTimeout", err)
	}
	t.Logf("timed out %v after the pulled call returned", time.Since(start))
}
