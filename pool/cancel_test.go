package pool

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mproc/mproc/shm"
)

type cancelArg struct {
	Seen *shm.Array[int64] // [2*Slot]: started; [2*Slot+1]: UnixNano when ctx was seen done
	Slot int
	Fail bool
	D    time.Duration
}

// waitCtx runs until its context ends (recording when it saw that) or D
// passes; with Fail it fails at once.
var waitCtx = RegisterCtx("test.waitctx", func(ctx context.Context, a cancelArg) (int, error) {
	if a.Fail {
		return 0, errors.New("failing at once")
	}
	seen := a.Seen.Slice()
	atomic.StoreInt64(&seen[2*a.Slot], 1)
	select {
	case <-ctx.Done():
		atomic.StoreInt64(&seen[2*a.Slot+1], time.Now().UnixNano())
		return 0, ctx.Err()
	case <-time.After(a.D):
		return 1, nil
	}
})

func mustSeen(t testing.TB, n int) *shm.Array[int64] {
	t.Helper()
	a, err := shm.NewArray[int64](2 * n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// waitSeen waits until slot's task recorded event (0: started, 1: saw its
// context end), failing after d.
func waitSeen(t testing.TB, seen *shm.Array[int64], slot, event int, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); atomic.LoadInt64(&seen.Slice()[2*slot+event]) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("task %d: event %d not seen within %v", slot, event, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCancelReachesRunningTask(t *testing.T) {
	ctx := context.Background()
	t.Run("Result.Cancel", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 1, NoPin: true})
		pid := p.Stats()[0].Pid
		seen := mustSeen(t, 1)
		r := ApplyAsync(ctx, p, waitCtx, cancelArg{Seen: seen, D: time.Minute})
		waitSeen(t, seen, 0, 0, 10*time.Second)
		r.Cancel()
		if _, err := r.Get(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get after Cancel = %v, want context.Canceled", err)
		}
		waitSeen(t, seen, 0, 1, 2*time.Second)
		if v, err := Apply(ctx, p, cube, 2); v != 8 || err != nil || p.Stats()[0].Pid != pid {
			t.Fatalf("after a cooperative cancel: %v, %v, pid %d; want 8 from the same worker %d", v, err, p.Stats()[0].Pid, pid)
		}
	})
	t.Run("the caller's context of MapAsync ends", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 2, NoPin: true, ChunkSize: 1})
		seen := mustSeen(t, 2)
		cctx, cancel := context.WithCancel(ctx)
		r := MapAsync(cctx, p, waitCtx, []cancelArg{{Seen: seen, Slot: 0, D: time.Minute}, {Seen: seen, Slot: 1, D: time.Minute}})
		waitSeen(t, seen, 0, 0, 10*time.Second)
		waitSeen(t, seen, 1, 0, 10*time.Second)
		cancel()
		if _, err := waitResult(t, r, 5*time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get = %v, want context.Canceled", err)
		}
		waitSeen(t, seen, 0, 1, 2*time.Second)
		waitSeen(t, seen, 1, 1, 2*time.Second)
	})
	t.Run("Apply's context times out", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 1, NoPin: true})
		seen := mustSeen(t, 1)
		tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := Apply(tctx, p, waitCtx, cancelArg{Seen: seen, D: time.Minute}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Apply = %v, want context.DeadlineExceeded", err)
		}
		waitSeen(t, seen, 0, 1, 2*time.Second)
	})
	t.Run("another task fails the call", func(t *testing.T) {
		p := mustPool(t, &Config{Workers: 2, NoPin: true, ChunkSize: 1})
		seen := mustSeen(t, 1)
		r := MapAsync(ctx, p, waitCtx, []cancelArg{{Seen: seen, D: time.Minute}, {Seen: seen, Fail: true, D: 300 * time.Millisecond}})
		_, err := waitResult(t, r, 5*time.Second)
		var te *TaskError
		if !errors.As(err, &te) || te.Index != 1 {
			t.Fatalf("Map = %v, want task 1's failure", err)
		}
		waitSeen(t, seen, 0, 1, 2*time.Second)
	})
}

// A RegisterCtx task whose time is up sees its context cancelled and, if it
// returns, keeps its worker: the task fails with ErrTaskTimeout, no kill.
func TestTaskTimeoutCancelsContextFirst(t *testing.T) {
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	pid := p.Stats()[0].Pid
	seen := mustSeen(t, 1)
	start := time.Now()
	_, err := Apply(context.Background(), p, waitCtx, cancelArg{Seen: seen, D: time.Minute}, TaskTimeout(100*time.Millisecond))
	if !errors.Is(err, ErrTaskTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply = %v, want ErrTaskTimeout with the task's context.Canceled", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("timeout reported after %v, want about 100ms", took)
	}
	waitSeen(t, seen, 0, 1, time.Second)
	if s := p.Stats()[0]; s.Pid != pid || s.Restarts != 0 {
		t.Fatalf("worker pid %d (was %d), %d restarts: want the same worker, not killed", s.Pid, pid, s.Restarts)
	}
	// A task that ignores its context is killed after the grace period.
	_, err = Apply(context.Background(), p, sleep, time.Minute, TaskTimeout(50*time.Millisecond))
	if !errors.Is(err, ErrTaskTimeout) {
		t.Fatalf("Apply(sleep) = %v, want ErrTaskTimeout", err)
	}
}

// Terminate cancels a running RegisterCtx task's context before it kills
// the worker, so the task can clean up; the call fails with ErrTerminated.
func TestTerminateCancelsContextFirst(t *testing.T) {
	ctx := context.Background()
	p := mustPool(t, &Config{Workers: 1, NoPin: true})
	seen := mustSeen(t, 1)
	r := ApplyAsync(ctx, p, waitCtx, cancelArg{Seen: seen, D: time.Minute})
	waitSeen(t, seen, 0, 0, 10*time.Second)
	start := time.Now()
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Terminate took %v", took)
	}
	if atomic.LoadInt64(&seen.Slice()[1]) == 0 {
		t.Fatal("the task never saw its context cancelled before its worker was killed")
	}
	if _, err := r.Get(ctx); !errors.Is(err, ErrTerminated) {
		t.Fatalf("Get after Terminate = %v, want ErrTerminated", err)
	}
}
