package pool

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// collected reports, after GCs for up to d, whether the cleanups that
// send to ch all ran: n of them.
func collected(ch <-chan string, n int, d time.Duration) []string {
	var got []string
	for deadline := time.Now().Add(d); len(got) < n && time.Now().Before(deadline); {
		runtime.GC()
		select {
		case s := <-ch:
			got = append(got, s)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return got
}

// Nothing of a call (its arguments, its results) stays reachable from the
// pool once the call returned, even while a worker still runs one of its
// tasks (bpo-29861 in Python).
func TestCallReleasedWhenItReturns(t *testing.T) {
	ctx := context.Background()
	t.Run("a call that succeeded", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 2, NoPin: true})
		gone := make(chan string, 2)
		args := make([]int, 1<<20)
		runtime.AddCleanup(&args[0], func(s string) { gone <- s }, "args")
		out, err := Map(ctx, p, cube, args)
		if err != nil {
			t.Fatal(err)
		}
		runtime.AddCleanup(&out[0], func(s string) { gone <- s }, "results")
		args, out = nil, nil
		if got := collected(gone, 2, 5*time.Second); len(got) != 2 {
			t.Fatalf("collected %v after Map returned, want args and results", got)
		}
	})
	t.Run("a call cancelled while a task of it runs", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 1, NoPin: true, ChunkSize: 1})
		gone := make(chan string, 2)
		args := make([]time.Duration, 1<<16)
		args[0] = 500 * time.Millisecond // runs on after the cancel
		runtime.AddCleanup(&args[0], func(s string) { gone <- s }, "args")
		r := MapAsync(ctx, p, sleep, args)
		time.Sleep(20 * time.Millisecond) // the first task runs
		r.Cancel()
		if _, err := r.Get(ctx); err == nil {
			t.Fatal("Get after Cancel = nil error")
		}
		results := r.v
		runtime.AddCleanup(&results[0], func(s string) { gone <- s }, "results")
		args, results, r = nil, nil, nil
		if got := collected(gone, 2, 300*time.Millisecond); len(got) != 2 {
			t.Fatalf("collected %v while the worker still runs a task of the cancelled call, want args and results", got)
		}
		inflight := p.core.slots[0].snapshotInflight()
		if len(inflight) == 0 {
			t.Fatal("no task of the cancelled call still in flight: the test proves nothing")
		}
		for _, ch := range inflight {
			if ch.args != nil {
				t.Fatal("a running chunk of a finished call still holds its encoded arguments")
			}
		}
	})
}

// snapshotInflight returns w's chunks in flight (for tests).
func (w *slot) snapshotInflight() []*chunk {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return append([]*chunk(nil), w.inflight...)
}
