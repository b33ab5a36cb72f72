package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestApplyAttended: a blocking Apply on a machine with a CPU to spare
// consumes its own result (attend.go), and the values are right.
func TestApplyAttended(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("a caller attends only where a CPU is idle for it")
	}
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	ctx := context.Background()
	w := p.core.slots[0]
	for i := range 2000 {
		if v, err := Apply(ctx, p, cube, i); err != nil || v != i*i*i {
			t.Fatalf("Apply(cube, %d) = %v, %v", i, v, err)
		}
	}
	if w.attended.Load() == 0 {
		t.Fatal("no result of 2000 Apply calls was consumed by its caller")
	}
	// The collector still serves what callers do not attend.
	args := make([]int, 500)
	for i := range args {
		args[i] = i
	}
	got, err := Map(ctx, p, cube, args)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i*i {
			t.Fatalf("Map item %d = %d", i, v)
		}
	}
	r := ApplyAsync(ctx, p, cube, 3) // not attended: Get from another goroutine
	if v, err := waitResult(t, r, 10*time.Second); err != nil || v != 27 {
		t.Fatalf("ApplyAsync = %v, %v", v, err)
	}
}

// TestAttendWithConcurrentCalls: callers attending their Apply while other
// goroutines run Map, Imap and Apply on the same workers; every result
// arrives once and right (the point of running it under -race).
func TestAttendWithConcurrentCalls(t *testing.T) {
	p := mustPool(t, &Config{Workers: 2, NoPin: true})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	fail := func(format string, a ...any) {
		select {
		case errs <- fmt.Errorf(format, a...):
		default:
		}
	}
	for g := range 3 {
		wg.Go(func() {
			for i := range 300 {
				x := g*1000 + i
				if v, err := Apply(ctx, p, cube, x); err != nil || v != x*x*x {
					fail("Apply(cube, %d) = %v, %v", x, v, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for round := range 20 {
			args := make([]int, 64)
			for i := range args {
				args[i] = round + i
			}
			got, err := Map(ctx, p, cube, args, ChunkSize(1))
			if err != nil {
				fail("Map: %v", err)
				return
			}
			for i, v := range got {
				if v != args[i]*args[i]*args[i] {
					fail("Map item %d = %d", i, v)
					return
				}
			}
			n := 0
			for v, err := range Imap(ctx, p, cube, func(yield func(int) bool) {
				for i := range 16 {
					if !yield(i) {
						return
					}
				}
			}) {
				if err != nil || v != n*n*n {
					fail("Imap item %d = %v, %v", n, v, err)
					return
				}
				n++
			}
			if n != 16 {
				fail("Imap gave %d items, want 16", n)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestAttendBrokenPeer: when an attending caller finds the peer broken it
// hands the verdict to the collector (recvBroken and a ring), which ends
// the worker as it would have itself; the pool replaces it.
func TestAttendBrokenPeer(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	ctx := context.Background()
	if _, err := Apply(ctx, p, cube, 2); err != nil {
		t.Fatal(err)
	}
	w := p.core.slots[0]
	before := p.Stats()[0].Pid
	w.recvMu.Lock()
	sl := w.recvLink
	if sl == nil {
		w.recvMu.Unlock()
		t.Fatal("no link being collected")
	}
	w.peerBrokenLocked(sl)
	w.recvMu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.Stats()[0]
		if st.Restarts == 1 && st.Pid != before && st.Pid > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not replaced after a broken peer was reported: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if v, err := Apply(ctx, p, cube, 4); err != nil || v != 64 {
		t.Fatalf("Apply after the replacement = %v, %v", v, err)
	}
}

// TestAttendDuringTerminate: callers attending their Apply while the pool
// is terminated all return, none hangs on the consumer lock or a link
// released under it.
func TestAttendDuringTerminate(t *testing.T) {
	p, err := New(&Config{Workers: 2, NoPin: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if _, err := Apply(context.Background(), p, cube, g+i); err != nil {
					if !errors.Is(err, ErrTerminated) && !errors.Is(err, ErrClosed) {
						t.Errorf("Apply after Terminate = %v, want ErrTerminated or ErrClosed", err)
					}
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("callers still blocked 10 s after Terminate")
	}
}
