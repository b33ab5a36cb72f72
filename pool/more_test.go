package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mproc/mproc/internal/codec"
	"github.com/mproc/mproc/internal/cpus"
)

func TestRegisterRules(t *testing.T) {
	mustPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(r.(string), want) {
				t.Fatalf("%s: panic %v, want one mentioning %q", name, r, want)
			}
		}()
		f()
	}
	mustPanic("name over 255 bytes", "over the 255-byte limit", func() {
		Register(strings.Repeat("n", 256), func(int) (int, error) { return 0, nil })
	})
	mustPanic("after Init", "inside main cannot exist in a worker", func() {
		Register("test.late", func(int) (int, error) { return 0, nil })
	})
	mustPanic("after Init, naming the call", "more_test.go:", func() {
		Register("test.late", func(int) (int, error) { return 0, nil })
	})
	// Reopen the registry to check duplicate detection.
	registry.mu.Lock()
	registry.closed = false
	registry.mu.Unlock()
	defer closeRegistry()
	mustPanic("duplicate", "twice: at", func() {
		Register("test.cube", func(int) (int, error) { return 0, nil })
	})
	mustPanic("duplicate, naming the second Register call", "more_test.go:", func() {
		Register("test.cube", func(int) (int, error) { return 0, nil })
	})
	if _, ok := registry.byName["test.late"]; ok {
		t.Fatal("a refused registration was kept")
	}
}

func TestStatsAndPinning(t *testing.T) {
	allowed, err := cpus.Allowed()
	if err != nil {
		t.Skip(err)
	}
	p := mustPool(t, &Config{Workers: 2})
	if _, err := Map(context.Background(), p, work, make([]int, 1000)); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	var total int64
	for i, s := range st {
		total += s.Tasks
		if s.Pid == 0 || s.Busy <= 0 || s.Worker != i {
			t.Errorf("Stats[%d] = %+v", i, s)
		}
		masks, err := cpus.ThreadMasks(s.Pid)
		if err != nil {
			t.Fatal(err)
		}
		for tid, m := range masks {
			if len(m) != 1 || m[0] != s.CPU {
				t.Errorf("worker %d thread %d on CPUs %v, want [%d]", i, tid, m, s.CPU)
			}
		}
	}
	if total != 1000 {
		t.Errorf("tasks done = %d, want 1000", total)
	}
	lay := p.Layout()
	if len(lay) != 2 || lay[0].CPU != st[0].CPU || lay[1].CPU != st[1].CPU {
		t.Errorf("Layout = %+v, Stats = %+v", lay, st)
	}
	if len(allowed) >= 2 && lay[0].CPU == lay[1].CPU {
		t.Errorf("two workers share CPU %d although %v are allowed", lay[0].CPU, allowed)
	}
}

var echoBytes = Register("test.echobytes", func(b []byte) (int, error) {
	for i, c := range b {
		if c != byte(i*7) {
			return 0, errors.New("corrupt payload")
		}
	}
	return len(b), nil
})

// TestLargeMessages sends messages larger than a ring slot can hold, which
// travel as fragments.
func TestLargeMessages(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true, ChunkSize: 3})
	args := make([][]byte, 7)
	for i := range args {
		args[i] = make([]byte, 300_000+i)
		for j := range args[i] {
			args[i][j] = byte(j * 7)
		}
	}
	got, err := Map(context.Background(), p, echoBytes, args)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range got {
		if n != len(args[i]) {
			t.Fatalf("got[%d] = %d, want %d", i, n, len(args[i]))
		}
	}
}

var reverseFloats = Register("test.reversefloats", func(v []float64) ([]float64, error) {
	out := make([]float64, len(v))
	for i, x := range v {
		out[len(v)-1-i] = -x
	}
	return out, nil
})

// TestLargeArgumentsAndResults sends fragmented task messages while
// fragmented results come back on the same link (run it under -race).
func TestLargeArgumentsAndResults(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true, ChunkSize: 1})
	args := make([][]float64, 12)
	for i := range args {
		args[i] = make([]float64, 40_000+i) // 320 KiB: over a ring slot
		for j := range args[i] {
			args[i][j] = float64(i*1_000_000 + j)
		}
	}
	got, err := Map(context.Background(), p, reverseFloats, args)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		n := len(args[i])
		if len(v) != n {
			t.Fatalf("len(got[%d]) = %d, want %d", i, len(v), n)
		}
		for j, x := range v {
			if want := -args[i][n-1-j]; x != want {
				t.Fatalf("got[%d][%d] = %v, want %v", i, j, x, want)
			}
		}
	}
}

func TestTerminate(t *testing.T) {
	p, err := New(&Config{Workers: 1, NoPin: true, ChunkSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := MapAsync(context.Background(), p, sleep, []time.Duration{time.Minute, time.Minute, time.Minute})
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Terminate took %v", d)
	}
	if _, err := r.Get(context.Background()); !errors.Is(err, ErrTerminated) {
		t.Fatalf("Get = %v, want ErrTerminated", err)
	}
	if err := p.Terminate(); err != nil {
		t.Fatalf("second Terminate = %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close after Terminate = %v", err)
	}
}

func TestJoinContext(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	r := ApplyAsync(context.Background(), p, sleep, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Join(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join = %v, want DeadlineExceeded while a task runs", err)
	}
	if err := p.Join(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(context.Background()); err != nil {
		t.Fatalf("task submitted before Close = %v, want it to finish", err)
	}
}

// rawInts encodes 0..n-1 as call arguments.
func rawInts(tb testing.TB, n int) *encoded {
	tb.Helper()
	argc := codec.For[int]()
	a, err := encodeArgs(cube.e, n, func(dst []byte, i int) ([]byte, error) { return argc.Append(dst, i) })
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// FuzzResultMessage feeds hostile bytes to the worker loop and to the
// parent's result parsing: never a panic, the worker answers with at most
// the items it was given, and the parent hands each item of the chunk to
// its call at most once, in order, with exactly the bytes the message held.
func FuzzResultMessage(f *testing.F) {
	f.Add(encodeTask(nil, cube.e, 1, flagFailFast, rawInts(f, 3), 0, 3))
	res := appendHeader(nil, msgHeader{kind: kindResult, count: 3, job: 1})
	for i := range 3 {
		res = append(res, stOK)
		var at int
		res, at = beginItem(res)
		res = endItem(append(res, byte(i), 0, 0, 0, 0, 0, 0, 0), at)
	}
	f.Add(res)
	f.Add(append(res[:len(res)-9:len(res)-9], stErr, 2, 0, 0, 0, 'n', 'o'))
	f.Add([]byte{kindResult, flagPartial, 5, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := parseHeader(b)
		if err != nil {
			return
		}
		budget := -1
		out, _, _ := runTasks(nil, h, body, &budget, nil, nil)
		if oh, _, err := parseHeader(out); err != nil || oh.count > h.count || oh.job != h.job {
			t.Fatalf("runTasks answered %+v (%v) to %+v", oh, err, h)
		}

		const n = 3
		var got []int
		c := newCall(cube.e, callConfig{}, rawInts(t, n))
		c.dec = func(i int, item []byte) error {
			if len(item) != 8 {
				return errors.New("bad size")
			}
			return nil
		}
		c.each = func(i int, err error) { got = append(got, i) }
		w := &slot{p: &core{}}
		ch := &chunk{c: c, args: c.args, lo: 0, hi: n}
		rest, ok := w.deliver(ch, c, false, h, body, workerID{Pid: 1})
		for k, i := range got {
			if i != k {
				t.Fatalf("delivered items %v, want 0, 1, ... in order", got)
			}
		}
		switch {
		case rest == nil && ok && len(got) != n:
			t.Fatalf("complete with %d of %d items", len(got), n)
		case rest != nil && rest.lo != len(got):
			t.Fatalf("rest starts at %d after %d delivered items", rest.lo, len(got))
		case h.count > n && ok:
			t.Fatalf("a result of %d items for a chunk of %d accepted", h.count, n)
		}
	})
}

// badArg fails to encode when Fail is set.
type badArg struct{ Fail bool }

func (a badArg) MarshalBinary() ([]byte, error) {
	if a.Fail {
		return nil, errors.New("cannot encode")
	}
	return []byte{0}, nil
}

func (a *badArg) UnmarshalBinary([]byte) error { return nil }

var takeBadArg = Register("test.badarg", func(badArg) (int, error) { return 1, nil })

// drainWithin runs seq to its end in a goroutine and returns the errors
// it yielded, failing the test if it does not end within d.
func drainWithin[R any](t *testing.T, d time.Duration, seq func(func(R, error) bool)) []error {
	t.Helper()
	errc := make(chan []error, 1)
	go func() {
		var errs []error
		for _, err := range seq {
			if err != nil {
				errs = append(errs, err)
			}
		}
		errc <- errs
	}()
	select {
	case errs := <-errc:
		return errs
	case <-time.After(d):
		t.Fatalf("iteration still running after %v", d)
		return nil
	}
}

func TestImapCallFails(t *testing.T) {
	t.Run("argument that cannot be encoded", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 1, NoPin: true, ChunkSize: 1})
		args := []badArg{{}, {Fail: true}, {}}
		// As Python's imap: the item's error, and the stream goes on.
		var got []string
		for v, err := range Imap(context.Background(), p, takeBadArg, slices.Values(args)) {
			got = append(got, fmt.Sprint(v, err != nil && strings.Contains(err.Error(), "task 1 ") && strings.Contains(err.Error(), "cannot encode")))
		}
		if want := []string{"1 false", "0 true", "1 false"}; !slices.Equal(got, want) {
			t.Fatalf("Imap yielded %q, want %q", got, want)
		}
		n := 0
		for r, err := range ImapUnordered(context.Background(), p, takeBadArg, slices.Values(args)) {
			if (err != nil) != (r.Index == 1) {
				t.Fatalf("ImapUnordered yielded %+v, %v; want an error for item 1 only", r, err)
			}
			n++
		}
		if n != 3 {
			t.Fatalf("ImapUnordered yielded %d items, want 3", n)
		}
	})
	t.Run("Terminate during the iteration", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 1, NoPin: true, ChunkSize: 1})
		time.AfterFunc(100*time.Millisecond, func() { p.Terminate() })
		args := []time.Duration{10 * time.Millisecond, time.Minute, time.Minute, time.Minute}
		errs := drainWithin(t, 5*time.Second, Imap(context.Background(), p, sleep, slices.Values(args)))
		if len(errs) != 1 || !errors.Is(errs[0], ErrTerminated) {
			t.Fatalf("Imap yielded errors %v, want ErrTerminated once", errs)
		}
	})
}

// TestRequeueAfterTerminate: a chunk coming back after Terminate took its
// snapshot of the queue (a retiring worker's skipped items, a settle that
// raced the state change) must fail its call, not wait in the queue.
func TestRequeueAfterTerminate(t *testing.T) {
	p := &core{state: stateTerminated}
	c := newCall(cube.e, callConfig{}, rawInts(t, 2))
	p.requeue(&chunk{c: c, args: c.args, lo: 1, hi: 2})
	select {
	case <-c.done:
	default:
		t.Fatal("call still pending after its chunk was requeued on a terminated pool")
	}
	if err := c.cancelled(); !errors.Is(err, ErrTerminated) {
		t.Fatalf("call error = %v, want ErrTerminated", err)
	}
	if len(p.pending) != 0 {
		t.Fatalf("pending = %d chunks, want none", len(p.pending))
	}
}

// TestSubmitDoesNotWaitForRingSpace: a message too large for the task ring
// must not hold the submitting goroutine until the busy worker makes room;
// the worker's sender goroutine takes it over.
func TestSubmitDoesNotWaitForRingSpace(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	busy := ApplyAsync(context.Background(), p, sleep, time.Second)
	time.Sleep(50 * time.Millisecond) // the worker is in the task
	big := make([]byte, 3<<20)        // over the 1 MiB task ring
	for i := range big {
		big[i] = byte(i * 7)
	}
	start := time.Now()
	r := ApplyAsync(context.Background(), p, echoBytes, big)
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("ApplyAsync waited %v for the busy worker, want it to return at once", d)
	}
	if _, err := busy.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Get(context.Background()); n != len(big) || err != nil {
		t.Fatalf("Get = %d, %v; want %d, nil", n, err, len(big))
	}
}

// nestedMap starts a pool of its own inside a worker, maps cube over
// 1..n there and closes it (reaping its workers) before returning.
var nestedMap = Register("test.nestedmap", func(n int) ([]int, error) {
	p, err := New(&Config{Workers: 1, NoPin: true})
	if err != nil {
		return nil, err
	}
	args := make([]int, n)
	for i := range args {
		args[i] = i + 1
	}
	out, err := Map(context.Background(), p, cube, args)
	return out, errors.Join(err, p.Close())
})

func TestPoolInsideTask(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	got, err := Apply(context.Background(), p, nestedMap, 4)
	if err != nil {
		t.Fatalf("Apply = %v", err)
	}
	if want := []int{1, 8, 27, 64}; !slices.Equal(got, want) {
		t.Fatalf("Apply = %v, want %v", got, want)
	}
}

// The pull path marks results delivered a bitmap word at a time: each item
// must come back fresh exactly once, and the bits of one word must not
// spill into the next.
func TestMarkDelivered(t *testing.T) {
	pl := &pulled{n: 200, delivered: make([]atomic.Uint64, 4)}
	if got, want := pl.markDelivered(3, 10), uint64(0x3f8); got != want {
		t.Fatalf("markDelivered(3, 10) = %#x, want %#x", got, want)
	}
	if got, want := pl.markDelivered(0, 5), uint64(0x7); got != want {
		t.Fatalf("markDelivered(0, 5) after (3, 10) = %#x, want %#x (3 and 4 were delivered)", got, want)
	}
	if got := pl.markDelivered(60, 64); got != 0xf<<60 {
		t.Fatalf("markDelivered(60, 64) = %#x, want the top 4 bits", got)
	}
	if got := pl.markDelivered(64, 128); got != ^uint64(0) {
		t.Fatalf("markDelivered(64, 128) = %#x, want a whole word", got)
	}
	if w := pl.delivered[2].Load(); w != 0 {
		t.Fatalf("word 2 = %#x after marking words 0 and 1 only", w)
	}
	for i := range 128 {
		if !pl.isDelivered(i) != (i >= 10 && i < 60) {
			t.Fatalf("isDelivered(%d) = %v", i, pl.isDelivered(i))
		}
	}
}

func TestWellFormed(t *testing.T) {
	msg := []byte{stOK, 1, 0, 0, 0, 'a', stErr, 0, 0, 0, 0}
	for _, tc := range []struct {
		body  []byte
		count int
		want  bool
	}{
		{msg, 2, true},
		{nil, 0, true},
		{msg, 1, false},                           // an item left over
		{msg, 3, false},                           // one missing
		{msg[:len(msg)-1], 2, false},              // cut inside a length
		{[]byte{stOK, 5, 0, 0, 0, 'a'}, 1, false}, // a length past the end
	} {
		if got := wellFormed(tc.body, tc.count); got != tc.want {
			t.Errorf("wellFormed(%x, %d) = %v, want %v", tc.body, tc.count, got, tc.want)
		}
	}
}

// TestOKRun: a run of raw results stops at a failure, a value of another
// size, an item already delivered, the bitmap word's end and the body's.
func TestOKRun(t *testing.T) {
	ok := func(v byte) []byte { return []byte{stOK, 2, 0, 0, 0, v, v} }
	body := slices.Concat(ok(1), ok(2), []byte{stErr, 0, 0, 0, 0}, ok(4))
	for _, tc := range []struct {
		body  []byte
		max   int
		size  int
		fresh uint64
		want  int
	}{
		{body, 4, 2, ^uint64(0), 2},      // up to the failure
		{body, 1, 2, ^uint64(0), 1},      // the word ends
		{body, 4, 2, 0b101, 1},           // item 1 was delivered before
		{body, 4, 3, ^uint64(0), 0},      // values of another size
		{body[14:], 4, 2, ^uint64(0), 0}, // starts at the failure
		{ok(9)[:6], 4, 2, ^uint64(0), 0}, // the body ends inside the value
		{slices.Concat(ok(1), ok(2)), 8, 2, ^uint64(0), 2},
	} {
		if got := okRun(tc.body, tc.max, tc.size, tc.fresh); got != tc.want {
			t.Errorf("okRun(%x, %d, %d, %b) = %d, want %d", tc.body, tc.max, tc.size, tc.fresh, got, tc.want)
		}
	}
}
