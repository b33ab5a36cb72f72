package pool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mproc/mproc/internal/codec"
	"github.com/mproc/mproc/shm"
	"golang.org/x/sys/unix"
)

// Functions for the failure tests, registered at package init.
var (
	sumArray = Register("test.sumarray", func(a *shm.Array[float64]) (float64, error) {
		s := 0.0
		for _, x := range a.Slice() {
			s += x
		}
		return s, nil
	})
	// memfdMappings counts the worker's mappings of memfd segments other
	// than its own link.
	memfdMappings = Register("test.memfdmaps", func(struct{}) (int, error) {
		f, err := os.Open("/proc/self/maps")
		if err != nil {
			return 0, err
		}
		defer f.Close()
		n := 0
		for sc := bufio.NewScanner(f); sc.Scan(); {
			if line := sc.Text(); strings.Contains(line, "/memfd:") && !strings.Contains(line, "pool-w") {
				n++
			}
		}
		return n, nil
	})
	// initOnlyOnce succeeds in the first worker process only: the file at
	// $MPROC_TEST_INITFLAG records that a worker started.
	initOnlyOnce = Register("test.initonlyonce", func(struct{}) (struct{}, error) {
		path := os.Getenv("MPROC_TEST_INITFLAG")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return struct{}{}, fmt.Errorf("database gone: %w", err)
		}
		return struct{}{}, f.Close()
	})
	bigOut = Register("test.bigout", func(n int) ([]byte, error) {
		b := make([]byte, n)
		b[0], b[n-1] = byte(n), byte(n>>8)
		return b, nil
	})
	// countedSleep counts its runs in a shared array, then fails at
	// index 0 and sleeps elsewhere.
	countedSleep = Register("test.countedsleep", func(a countedArg) (int, error) {
		a.Runs.Slice()[0]++ // one worker at a time runs these in the tests
		if a.I == 0 {
			return 0, errors.New("first item fails")
		}
		time.Sleep(a.D)
		return a.I, nil
	})
	// blockAt records its pid in a shared array and blocks at index At,
	// so a test can kill a worker known to be inside a task.
	blockAt     = Register("test.blockat", blockAtFn, Idempotent())
	blockAtOnce = Register("test.blockatonce", blockAtFn) // not idempotent
	// goCrash ends the worker as the Go runtime does on a fatal error
	// (exit status 2), without its multi-page trace in the test output.
	goCrash = Register("test.gocrash", func(int) (int, error) {
		os.Exit(2)
		return 0, nil
	})
)

type countedArg struct {
	Runs *shm.Array[int64]
	I    int
	D    time.Duration
}

type blockArg struct {
	Seen  *shm.Array[int64] // [pid of the blocked attempt, attempts at At]
	I, At int
}

// blockAtFn records its pid in a shared array and blocks at index At, so a
// test can kill a worker known to be inside a task.
func blockAtFn(a blockArg) (int, error) {
	if a.I == a.At {
		runs := a.Seen.Slice()
		runs[1]++
		if runs[1] == 1 { // only the first attempt blocks
			runs[0] = int64(os.Getpid())
			time.Sleep(time.Minute)
		}
	}
	return 2 * a.I, nil
}

// Defect: workers never released segments they fetched.
func TestClosedSegmentsReleasedInWorkers(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	for i := range 20 {
		a, err := shm.NewArray[float64](1 << 20) // 8 MiB
		if err != nil {
			t.Fatal(err)
		}
		a.Slice()[0] = float64(i)
		if s, err := Apply(context.Background(), p, sumArray, a); err != nil || s != float64(i) {
			t.Fatalf("Apply(sum) = %v, %v; want %d", s, err, i)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := Apply(context.Background(), p, memfdMappings, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("worker still maps %d closed segments, want 0", n)
	}
}

// Defect: a pool whose workers cannot be restarted hung its calls.
func TestPoolFailsWhenNoWorkerCanStart(t *testing.T) {
	t.Setenv("MPROC_TEST_INITFLAG", t.TempDir()+"/started")
	p := mustPool(t, &Config{Workers: 1, NoPin: true, MaxTasksPerWorker: 1, Initializer: initOnlyOnce})
	if v, err := Apply(context.Background(), p, cube, 2); v != 8 || err != nil {
		t.Fatalf("first Apply = %v, %v; want 8", v, err)
	}
	// The worker retired; every replacement fails its initializer.
	_, err := waitResult(t, ApplyAsync(context.Background(), p, cube, 3), 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "database gone") {
		t.Fatalf("Apply on a pool without workers = %v, want the start-up failure", err)
	}
	if _, err := Apply(context.Background(), p, cube, 4); err == nil || !strings.Contains(err.Error(), "database gone") {
		t.Fatalf("later Apply = %v, want the start-up failure at once", err)
	}
	if err := p.Close(); err == nil || !strings.Contains(err.Error(), "database gone") {
		t.Fatalf("Close = %v, want the start-up failure", err)
	}
}

// A slot between exit and respawn is not gone: another slot giving up
// must not fail the calls it will run.
func TestSlotGoneSparesRespawningSlots(t *testing.T) {
	p := &core{}
	starting := &slot{p: p, state: slotStarting}
	giving := &slot{p: p, idx: 1, state: slotLive}
	p.slots = []*slot{starting, giving}
	c := newCall(cube.e, callConfig{}, rawInts(t, 1))
	p.pending = []*chunk{{c: c, args: c.args, lo: 0, hi: 1}}
	p.slotGone(giving, errors.New("start failed"))
	if c.finished.Load() || len(p.pending) != 1 || p.broken != nil {
		t.Fatalf("slotGone with a slot still starting failed the pool: broken = %v", p.broken)
	}
	p.slotGone(starting, errors.New("start failed again"))
	if !c.finished.Load() || p.broken == nil {
		t.Fatal("no slot left: the pending call must fail")
	}
}

// Defect: a chunk over the message limit came back as a dead worker.
func TestOversizeValues(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	t.Run("results over the limit in one chunk are split", func(t *testing.T) {
		one := mustPool(t, &Config{Workers: 1, NoPin: true, ChunkSize: 4096})
		args := slices.Repeat([]int{70 << 10}, 4096) // 280 MiB of results
		r := MapAsync(context.Background(), one, bigOut, args)
		got, err := waitResult(t, r, time.Minute)
		if err != nil {
			t.Fatalf("Map of 4096 results of 70 KiB = %v", err)
		}
		for i, b := range got {
			if len(b) != 70<<10 {
				t.Fatalf("result %d has %d bytes", i, len(b))
			}
		}
	})
	t.Run("one result over the limit", func(t *testing.T) {
		_, err := Apply(context.Background(), p, bigOut, maxValue+1)
		var te *TaskError
		if !errors.As(err, &te) || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(maxValue)) {
			t.Fatalf("Apply = %v, want a *TaskError wrapping ErrTooLarge naming the limit", err)
		}
	})
	t.Run("one argument over the limit", func(t *testing.T) {
		args := [][]byte{{1}, make([]byte, maxValue+1)}
		_, err := Map(context.Background(), p, echoBytes, args)
		var te *TaskError
		if !errors.As(err, &te) || te.Index != 1 || !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Map = %v, want a *TaskError for item 1 wrapping ErrTooLarge", err)
		}
	})
	if v, err := Apply(context.Background(), p, cube, 3); v != 27 || err != nil {
		t.Fatalf("pool unusable afterwards: %v, %v", v, err)
	}
	for _, s := range p.Stats() {
		if s.Restarts != 0 {
			t.Fatalf("worker %d restarted %d times: an oversize value is not a dead worker", s.Worker, s.Restarts)
		}
	}
}

// linkPair makes both ends of a link in this process.
func linkPair(t *testing.T) (parent, worker *shmLink) {
	t.Helper()
	parent, spec, err := newShmLink(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { parent.close() })
	worker, err = openShmLink(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return parent, worker
}

// Defect: a flood of fragments drove the parent's memory far past the
// message limit before it tripped.
func TestFragmentFloodIsBounded(t *testing.T) {
	parent, worker := linkPair(t)
	stop, done := make(chan struct{}), make(chan struct{})
	defer func() {
		close(stop)
		<-done // still inside Put, it would fault once the cleanup unmaps the link
	}()
	go func() {
		defer close(done)
		// A first fragment announcing the largest message, then more
		// fragments than it announced, for ever.
		frag := make([]byte, worker.out.MaxMessage())
		frag[0] = fragFirst
		binary.LittleEndian.PutUint64(frag[1:], maxMessage)
		worker.out.Put(context.Background(), frag)
		frag[0] = fragMore
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			worker.out.Put(ctx, frag)
			cancel()
		}
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := parent.recv(context.Background(), nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errBrokenPeer) {
		t.Fatalf("recv of endless fragments = %v, want errBrokenPeer", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > maxMessage+maxMessage/4 {
		t.Fatalf("recv allocated %d MiB for one message, want at most about %d", grew>>20, maxMessage>>20)
	}
}

// Defect: a task submitted just after an idle worker died was charged a
// retry it never used, so with Retries 0 it failed without running.
func TestRetryNotChargedForTaskNeverStarted(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true, Retries: 0})
	for i := range 10 {
		if _, err := Apply(context.Background(), p, cube, 1); err != nil {
			t.Fatal(err)
		}
		pid := p.Stats()[0].Pid
		if err := killPid(pid); err != nil {
			t.Fatal(err)
		}
		if v, err := waitResult(t, ApplyAsync(context.Background(), p, cube, i), 10*time.Second); err != nil || v != i*i*i {
			t.Fatalf("round %d: Apply after an idle worker's death = %v, %v; want %d (the task never ran on it)", i, v, err, i*i*i)
		}
	}
}

// Defect: after a fail-fast error the rest of a Map's chunks kept running.
func TestFailedMapStopsRunningItsItems(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true, ChunkSize: 100})
	runs, err := shm.NewArray[int64](1)
	if err != nil {
		t.Fatal(err)
	}
	defer runs.Close()
	args := make([]countedArg, 200)
	for i := range args {
		args[i] = countedArg{Runs: runs, I: i, D: 5 * time.Millisecond}
	}
	if _, err := Map(context.Background(), p, countedSleep, args); err == nil {
		t.Fatal("Map = nil error, want item 0's error")
	}
	time.Sleep(300 * time.Millisecond) // what kept running would run now
	if n := runs.Slice()[0]; n > 5 {
		t.Fatalf("%d items ran after the call failed at item 0, want at most a few", n)
	}
}

// blockedPid waits until a blockAt task records the pid of the worker it
// blocks in (seen[0]) and returns it.
func blockedPid(t *testing.T, seen *shm.Array[int64]) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if pid := int(atomic.LoadInt64(&seen.Slice()[0])); pid != 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatal("no worker reached the blocking task")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKillWorkerInsideTask kills a worker known to be running a task: the
// task is retried elsewhere and every result arrives once.
func TestKillWorkerInsideTask(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true, Retries: 1})
	seen, err := shm.NewArray[int64](2)
	if err != nil {
		t.Fatal(err)
	}
	defer seen.Close()
	args := make([]blockArg, 2000)
	for i := range args {
		args[i] = blockArg{Seen: seen, I: i, At: 1000}
	}
	r := MapAsync(context.Background(), p, blockAt, args)
	victim := blockedPid(t, seen)
	if r.Ready() {
		t.Fatal("Map finished while a task blocks")
	}
	if err := killPid(victim); err != nil {
		t.Fatal(err)
	}
	got, err := waitResult(t, r, 30*time.Second)
	if err != nil {
		t.Fatalf("Map after killing a worker inside a task = %v, want a retry", err)
	}
	for i, v := range got {
		if v != 2*i {
			t.Fatalf("result %d = %d, want %d", i, v, 2*i)
		}
	}
	if n := seen.Slice()[1]; n != 2 {
		t.Fatalf("the killed task ran %d times, want 2 (killed, then retried)", n)
	}
}

// A task that is not Idempotent never runs twice, whatever Retries says:
// its worker's death fails it with a *WorkerError.
func TestNonIdempotentTaskNotRerun(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true, Retries: 3})
	seen, err := shm.NewArray[int64](2)
	if err != nil {
		t.Fatal(err)
	}
	defer seen.Close()
	r := ApplyAsync(context.Background(), p, blockAtOnce, blockArg{Seen: seen, I: 0, At: 0})
	victim := blockedPid(t, seen)
	if err := killPid(victim); err != nil {
		t.Fatal(err)
	}
	_, err = waitResult(t, r, 10*time.Second)
	var we *WorkerError
	if !errors.As(err, &we) || we.Signal != os.Kill || we.Pid != victim {
		t.Fatalf("Get = %v, want a *WorkerError for SIGKILL of %d", err, victim)
	}
	time.Sleep(50 * time.Millisecond) // a re-run would show by now
	if n := atomic.LoadInt64(&seen.Slice()[1]); n != 1 {
		t.Fatalf("the task ran %d times, want 1: it is not Idempotent", n)
	}
}

// A worker killed by a Go runtime fatal error is reported as such, not
// as the library's own protocol error.
func TestRuntimeCrashIsNamed(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true, Retries: 0})
	_, err := Apply(context.Background(), p, goCrash, 0)
	var we *WorkerError
	if !errors.As(err, &we) || we.Code != 2 || !strings.Contains(err.Error(), "Go runtime fatal error") {
		t.Fatalf("Apply = %v, want a *WorkerError naming a Go runtime fatal error (exit 2)", err)
	}
}

// The mismatch error says what differs once, not the sentinel twice.
func TestFuncMismatchMessage(t *testing.T) {
	args := rawInts(t, 1)
	msg := encodeTask(nil, cube.e, 1, 0, args, 0, 1)
	msg[16] ^= 0xff // another type fingerprint
	h, body, err := parseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	budget := -1
	out, _, _ := runTasks(nil, h, body, &budget, nil, nil)
	_, res, _ := parseHeader(out)
	item, _, err := nextItem(res[1:])
	if err != nil {
		t.Fatal(err)
	}
	terr := itemError(res[0], item, cube.e.name, 0, workerID{Pid: 1})
	if !errors.Is(terr, ErrFuncMismatch) {
		t.Fatalf("error = %v, want ErrFuncMismatch", terr)
	}
	if n := strings.Count(terr.Error(), "different argument or result types"); n != 1 {
		t.Fatalf("error %q states the mismatch %d times, want once", terr, n)
	}
}

// ApplyAsync and MapAsync encode their arguments before returning: the
// caller may change them at once (run under -race).
func TestAsyncArgumentsMayBeReused(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	args := make([]int, 1000)
	for i := range args {
		args[i] = i
	}
	r := MapAsync(context.Background(), p, cube, args)
	one := []byte{0, 7, 14}
	ra := ApplyAsync(context.Background(), p, echoBytes, one)
	for i := range args {
		args[i] = -1
	}
	one = append(one[:0], 9)
	got, err := r.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i*i {
			t.Fatalf("result %d = %d, want %d: the argument changed after MapAsync returned", i, v, i*i*i)
		}
	}
	if n, err := ra.Get(context.Background()); n != 3 || err != nil {
		t.Fatalf("ApplyAsync = %d, %v; want 3", n, err)
	}
}

// ctlPair makes both ends of a control socket.
func ctlPair(t *testing.T) (parent, worker *ctlConn) {
	t.Helper()
	pf, cf, err := socketpair(unix.SOCK_SEQPACKET)
	if err != nil {
		t.Fatal(err)
	}
	if parent, err = newCtlConn(pf); err != nil {
		t.Fatal(err)
	}
	if worker, err = newCtlConn(cf); err != nil {
		t.Fatal(err)
	}
	return parent, worker
}

// Defect: an extra handshake answer from a buggy child blocked the
// parent's control reader for good.
func TestControlReaderSurvivesExtraAnswers(t *testing.T) {
	parent, worker := ctlPair(t)
	defer parent.close()
	c := &child{ctl: parent, ready: make(chan error, 1), results: make(chan []byte, 1), ctlDone: make(chan struct{})}
	go c.serveCtl()
	for _, m := range [][]byte{{opReady}, {opReady}, {opFailed, 'x'}, {opResult, 1}, {opResult, 2}, {'?'}} {
		if err := worker.send(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	worker.close()
	select {
	case <-c.ctlDone:
	case <-time.After(5 * time.Second):
		t.Fatal("control reader still blocked 5 s after the child closed its end")
	}
	if err := <-c.ready; err != nil {
		t.Fatalf("first answer = %v, want ready", err)
	}
}

// Defect: a worker's segment fetch waited for ever for its parent.
func TestFetchTimesOut(t *testing.T) {
	parent, worker := ctlPair(t)
	defer parent.close()
	defer worker.close()
	w := &workerSide{ctl: worker, timeout: 50 * time.Millisecond, replies: make(chan fetchReply, 1)}
	start := time.Now()
	if _, err := w.fetch(5); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("fetch without an answer = %v after %v, want a timeout error", err, time.Since(start))
	}
	// A late answer to an earlier fetch is not taken for this one.
	want := errors.New("segment 6 is closed")
	go func() {
		w.replies <- fetchReply{id: 5, err: errors.New("late answer for 5")}
		w.replies <- fetchReply{id: 6, err: want}
	}()
	w.timeout = 5 * time.Second
	if _, err := w.fetch(6); err != want {
		t.Fatalf("fetch(6) = %v, want %v", err, want)
	}
}

// waitGone fails the test unless every pid has exited and been reaped
// within d, running the collector meanwhile.
func waitGone(t *testing.T, pids []int, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); ; {
		runtime.GC()
		left := 0
		for _, pid := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d processes still there after %v", left, len(pids), d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The garbage collector terminates a Pool and kills a Process that their
// owner dropped without Close or Wait.
func TestUnreachablePoolAndProcessAreCleanedUp(t *testing.T) {
	pids := func() []int {
		p, err := New(&Config{Workers: 2, NoPin: true})
		if err != nil {
			t.Fatal(err)
		}
		var pids []int
		for _, s := range p.Stats() {
			pids = append(pids, s.Pid)
		}
		pr, err := Start(sleep, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return append(pids, pr.Pid())
	}()
	waitGone(t, pids, 10*time.Second)
}

// big4k is a result type whose elements decode from one byte each.
type big4k struct{ A [4096]byte }

var returnsBig = Register("test.returnsbig", func(int) ([]big4k, error) { return nil, nil })

// Defect: a forged result (an array header of 8 Mi elements, then 8 Mi
// empty maps: 8 MB that decode to 32 GiB) made the parent allocate it all
// up front and die. The parent's path for a result message must refuse it
// with an error for that item.
func TestForgedResultDoesNotExhaustParent(t *testing.T) {
	item := []byte{0x9a, 0x00, 0x80, 0x00, 0x00} // CBOR array of 8 Mi elements
	for range 8 << 20 {
		item = append(item, 0xa0) // an empty map
	}
	msg := appendHeader(nil, msgHeader{kind: kindResult, count: 1, job: 1})
	msg = append(msg, stOK)
	var at int
	msg, at = beginItem(msg)
	msg = endItem(append(msg, item...), at)
	h, body, err := parseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	var out []big4k
	resc := codec.For[[]big4k]()
	c := newCall(returnsBig.e, callConfig{}, rawInts(t, 1))
	c.dec = func(_ int, b []byte) error { return resc.Decode(b, &out) }
	w := &slot{p: &core{}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, ok := w.deliver(&chunk{c: c, args: c.args, lo: 0, hi: 1}, c, false, h, body, workerID{Pid: 1}); !ok {
		t.Fatal("a well-framed result message was taken for a broken peer")
	}
	runtime.ReadMemStats(&after)
	var te *TaskError
	if err := c.cancelled(); !errors.As(err, &te) || !errors.Is(err, codec.ErrOverBudget) {
		t.Fatalf("call error = %v, want a *TaskError wrapping codec.ErrOverBudget", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("decoding the forged result allocated %d MiB", grew>>20)
	}
}
